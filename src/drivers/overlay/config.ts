/**
 * The overlay driver's options (`-o`) and the typed config they become;
 * the VNI option is also where a network's VNI is stored once picked.
 */
import { InvalidArgument } from '../../errors.js';
import type { NetworkRecord } from '../../records.js';
import { overlayMtu } from '../../vxlan/mtu.js';

export const VXLANID_OPTION = 'com.docker.network.driver.overlay.vxlanid_list';
export const PEERS_OPTION = 'peers';
export const MTU_OPTION = 'com.docker.network.driver.mtu';
/** Docker's spelling: `-o encrypted` (stored as "") or `--opt encrypted=true`. */
export const ENCRYPTED_OPTION = 'encrypted';
/** The overlay MTU on an underlay of MTU 1500: the default when the driver is not told the underlay's. */
export const OVERLAY_MTU = overlayMtu(1500);
export const FIRST_VNI = 4096;
export const MAX_VNI = 0xffffff;

export const OVERLAY_OPTIONS: ReadonlySet<string> = new Set([VXLANID_OPTION, PEERS_OPTION, MTU_OPTION, ENCRYPTED_OPTION]);
const IPV4_PATTERN = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export interface OverlayConfig {
  /** Set once the network is stored; absent while a new network's VNI is not picked yet. */
  readonly vni?: number;
  /** External RFC 7348 VTEPs that receive the network's flooded traffic. */
  readonly externalPeers: readonly string[];
  /** As asked with the option: sandboxes get at most this, and never more than every host's underlay allows. */
  readonly mtu?: number;
  /** Every frame between hosts sealed with ESP (src/crypto/keyring.ts); none in clear. */
  readonly encrypted: boolean;
}

/** The typed config of the options in OVERLAY_OPTIONS; others are left alone (the controller warns of them). */
export function overlayConfig(network: Pick<NetworkRecord, 'options'>): OverlayConfig {
  const vniText = network.options[VXLANID_OPTION];
  let vni: number | undefined;
  if (vniText !== undefined) {
    vni = Number(vniText);
    if (!/^\d+$/.test(vniText) || vni < 1 || vni > MAX_VNI) {
      throw new InvalidArgument(`invalid VXLAN ID "${vniText}" for option ${VXLANID_OPTION}: an integer from 1 to ${MAX_VNI}`);
    }
  }
  const peersText = network.options[PEERS_OPTION];
  const externalPeers = peersText === undefined || peersText === '' ? [] : peersText.split(',').map((peer) => peer.trim());
  for (const peer of externalPeers) {
    if (!IPV4_PATTERN.test(peer)) throw new InvalidArgument(`invalid peer "${peer}" in option ${PEERS_OPTION}: an IPv4 address`);
  }
  const mtuText = network.options[MTU_OPTION];
  const mtu = mtuText === undefined ? undefined : Number(mtuText);
  if (mtuText !== undefined && (!/^\d+$/.test(mtuText) || mtu! < 68 || mtu! > 65535)) {
    throw new InvalidArgument(`invalid MTU "${mtuText}" for option ${MTU_OPTION}: an integer from 68 to 65535`);
  }
  const encryptedText = network.options[ENCRYPTED_OPTION];
  // Docker turns encryption on for any value, "false" too: a value that reads as off is refused instead.
  if (encryptedText !== undefined && encryptedText !== '' && encryptedText !== 'true') {
    throw new InvalidArgument(`invalid value "${encryptedText}" for option ${ENCRYPTED_OPTION}: give "-o encrypted" or "encrypted=true", or leave the option out for a plain network`);
  }
  const encrypted = encryptedText !== undefined;
  if (encrypted && externalPeers.length > 0) {
    throw new InvalidArgument(`options ${ENCRYPTED_OPTION} and ${PEERS_OPTION} cannot go together: external VTEPs could not open what netctl seals`);
  }
  return { ...(vni !== undefined ? { vni } : {}), externalPeers, ...(mtu !== undefined ? { mtu } : {}), encrypted };
}
