/**
 * The addon's fast path (native/flow.c) on one UDP socket: per overlay
 * network a TAP and a flow cache keyed by MAC that TypeScript fills with
 * decisions it made and empties when they may no longer hold. A cached MAC
 * lets the addon move frames TAP → UDP (to the MAC) and UDP → TAP (from it)
 * in the wake-up that read them, without calling JavaScript; everything else
 * is delivered to the TAP's and the socket's callbacks as before. What the
 * fast path moves is counted in a Float64Array (FLOW_* of batch-layout.ts).
 * Every call takes effect before it returns: after `forget`, no frame goes
 * where the entry said.
 */
import { addon } from './addon.js';
import type { NativeUdpHandle } from './addon.js';
import type { TapDevice } from './tap.js';

/** Where frames to one MAC go, and how. */
export interface FlowTarget {
  /** The VTEP's underlay IPv4 and data path port. */
  address: string;
  port: number;
  /** Frames (and a super-frame's segments) longer than this, Ethernet header included, are left to JavaScript. */
  frameLimit: number;
  /** The outbound SA that seals them (an encrypted network), else 0. */
  spi: number;
  /** Leave TCP checksums partial and mark them with VXLAN RCO: the VTEP is netctl's. */
  remoteChecksum: boolean;
  /** The counters' slot for this (network, VTEP). */
  slot: number;
}

export class FlowTable {
  readonly #handle: () => NativeUdpHandle;

  /** `handle` gives the socket's handle, throwing once it is closed. */
  constructor(handle: () => NativeUdpHandle) {
    this.#handle = handle;
  }

  /**
   * Serves `vni` between the socket and `tap`, with an empty cache: `header`
   * is the network's VXLAN header, frames longer than `maxFrame` are left to
   * JavaScript, and `slot` counts the TAP's frames. False, and nothing done,
   * when the TAP lacks virtio headers (the fast path reads only those).
   * The socket holds the TAP until `detach`, the TAP's close or its own.
   */
  attach(vni: number, tap: TapDevice, header: Uint8Array, encrypted: boolean, maxFrame: number, slot: number): boolean {
    return addon().udpFlowAttach(this.#handle(), vni, tap.native, header, encrypted, maxFrame, slot);
  }

  /** Stops serving `vni` (frames the fast path queued for its TAP are written first); unknown ones are ignored. */
  detach(vni: number): void {
    addon().udpFlowDetach(this.#handle(), vni);
  }

  /**
   * Frames of `vni` to `mac` go to `target`, and datagrams from the
   * target's address with source `mac` to the TAP; false when `vni` is not
   * attached.
   */
  install(vni: number, mac: number, target: FlowTarget): boolean {
    const { address, port, frameLimit, spi, remoteChecksum, slot } = target;
    return addon().udpFlowInstall(this.#handle(), vni, mac, address, port, frameLimit, spi, remoteChecksum, slot);
  }

  /** Drops the entry of `mac` on `vni`, or without `mac` every entry of `vni`. */
  forget(vni: number, mac?: number): void {
    addon().udpFlowForget(this.#handle(), vni, mac);
  }

  /** Where the fast path adds its counts from now on; the table holds it. */
  useCounters(counters: Float64Array): void {
    addon().udpFlowCounters(this.#handle(), counters);
  }
}
