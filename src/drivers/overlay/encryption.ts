/**
 * The overlay driver's side of encrypted networks: the host's key ring
 * (src/crypto/keyring.ts) over the ESP table attached to the VTEP's
 * underlay socket. The ring decides which SAs exist and tells the VTEP the
 * outbound SPI per network and peer; this file feeds it the other hosts'
 * published keys and renders what `inspect`, `GET /drivers` and the
 * metrics show of it (SPIs, ages and counters, never key material).
 */
import { KeyRing } from '../../crypto/keyring.js';
import type { KeyRingOptions, PublishedKeys } from '../../crypto/keyring.js';
import type { KeyPair } from '../../crypto/keys.js';
import { InvalidArgument } from '../../errors.js';
import { type EspCounters, type EspTable, formatSpi } from '../../sys/esp.js';
import type { Vtep } from '../../vxlan/vtep.js';
import type { Logger } from '../../log.js';

/** What the host gives the driver so that it can encrypt; see `OverlayDriverOptions.encryption`. */
export type EncryptionSetup =
  | {
      /** Attached to the VTEP's underlay socket already. */
      readonly table: EspTable;
      readonly staticKey: KeyPair;
      /** Every SA made, for `--esp-keylog` (Wireshark's esp_sa lines). */
      readonly keylog?: (line: string) => void;
      /** Key renewal period (default 10 minutes). */
      readonly rotateEveryMs?: number;
    }
  | {
      /** Why this host cannot encrypt (AES-GCM failed its self-test): encrypted networks are refused, naming it. */
      readonly unavailable: string;
    };

/** One peer's SAs on one network as inspect shows them. */
export interface PeerEncryption {
  /** The SPI frames to it are sealed with, 0x-hex; absent while there is none (frames are dropped). */
  readonly outboundSpi?: string;
  /** SPIs it may seal with towards us, 0x-hex, newest last. */
  readonly inboundSpis: readonly string[];
  /** How old the outbound key is, in Go's duration notation. */
  readonly keyAge?: string;
}

export class OverlayEncryption {
  private constructor(
    private readonly ring: KeyRing,
    private readonly table: EspTable,
    private readonly now: () => number,
  ) {}

  /** Makes the host's first epoch and publishes it with `publish`. */
  static async start(
    setup: Extract<EncryptionSetup, { table: EspTable }>,
    options: { self: string; vtep: Vtep; publish: (keys: PublishedKeys) => Promise<void>; logger: Logger },
  ): Promise<OverlayEncryption> {
    const now = Date.now;
    const keylog = setup.keylog;
    const ringOptions: KeyRingOptions = {
      self: options.self,
      staticKey: setup.staticKey,
      table: setup.table,
      setOutbound: (vni, peer, spi) => options.vtep.setOutboundSpi(vni, peer, spi),
      publish: options.publish,
      logger: options.logger,
      ...(setup.rotateEveryMs !== undefined ? { rotateEveryMs: setup.rotateEveryMs } : {}),
      ...(keylog !== undefined ? { onSa: (sa) => keylog(espSaLine(sa)) } : {}),
    };
    return new OverlayEncryption(await KeyRing.start(ringOptions), setup.table, now);
  }

  addNetwork(vni: number): void {
    this.ring.addNetwork(vni);
  }

  removeNetwork(vni: number): void {
    this.ring.removeNetwork(vni);
  }

  /** Another host's record: its published keys, or none (a host that cannot encrypt, or an older netctl). */
  setPeer(address: string, keys: PublishedKeys | undefined): void {
    if (keys === undefined) this.ring.peerGone(address);
    else this.ring.setPeer(address, keys);
  }

  peerGone(address: string): void {
    this.ring.peerGone(address);
  }

  /** Renews this host's keys now (as the timer does every rotation period); resolves once the new keys are published. */
  async rotate(): Promise<{ epoch: number; rotatedAt: string }> {
    await this.ring.rotate();
    const status = this.ring.status();
    const newest = status.epochs.at(-1);
    return { epoch: newest?.id ?? 0, rotatedAt: new Date(newest?.createdAt ?? this.now()).toISOString() };
  }

  /** The SAs with `peer` on `vni`, as inspect shows them. */
  peer(vni: number, peer: string): PeerEncryption {
    const state = this.ring.status(vni).peers.find((entry) => entry.peer === peer);
    const outbound = state?.outbound;
    return {
      ...(outbound !== undefined ? { outboundSpi: formatSpi(outbound.spi), keyAge: formatAge(this.now() - outbound.installedAt) } : {}),
      inboundSpis: (state?.inbound ?? []).map((sa) => formatSpi(sa.spi)),
    };
  }

  /** Counters for `GET /drivers`: SAs and datagrams sealed and opened, ESP drops by reason, rotations. */
  stats(): Record<string, number> {
    const status = this.ring.status();
    return {
      espRotations: status.rotations,
      espSpiCollisions: status.spiCollisions,
      ...espCounters('espSealed', this.table.totals('outbound')),
      ...espCounters('espOpened', this.table.totals('inbound')),
    };
  }

  /** Removes every SA and forgets the ephemeral keys; the table stays attached, empty, until the socket closes. */
  close(): void {
    this.ring.close();
    this.table.close();
  }
}

/** A refusal for a host that cannot encrypt. */
export function encryptionUnavailable(reason: string): InvalidArgument {
  return new InvalidArgument(`encrypted overlay networks are not available on this host: ${reason}`);
}

function espCounters(prefix: string, counters: EspCounters): Record<string, number> {
  const drops = Object.fromEntries(
    Object.entries(counters.drops).map(([reason, count]) => [`espDrop${reason[0]!.toUpperCase()}${reason.slice(1)}`, count]),
  );
  // Sealing refusals (no SA) are the VTEP's dropNoKey; what the table counts is what it saw.
  return { [`${prefix}Datagrams`]: counters.packets, [`${prefix}Bytes`]: counters.bytes, ...(prefix === 'espOpened' ? drops : {}) };
}

/** Seconds or minutes, as Go prints a time.Duration rounded to the second. */
function formatAge(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  return seconds < 60 ? `${seconds}s` : `${Math.floor(seconds / 60)}m${seconds % 60}s`;
}

/**
 * One SA as a line of Wireshark's `esp_sa` table (its ESP preferences),
 * so that tshark with `-o esp.enable_encryption_decode:TRUE -d
 * udp.port==4789,udpencap` and this file as the profile's esp_sa opens a
 * capture of the underlay. The key field is the AES key then the salt
 * (RFC 4106 §8.1's keying material).
 */
export function espSaLine(sa: { source: string; destination: string; spi: number; key: Uint8Array; salt: Uint8Array }): string {
  const key = Buffer.concat([sa.key, sa.salt]).toString('hex');
  return `"IPv4","${sa.source}","${sa.destination}","${formatSpi(sa.spi)}","AES-GCM with 16 octet ICV [RFC4106]","0x${key}","NULL",""`;
}
