/**
 * Liveness of the data path to each netctl peer VTEP, decided by the data
 * path itself: BFD-style probes (src/wire/probe.ts) sent on the data-path
 * port every `intervalMs` to each peer, answered by the peer's VTEP. A peer
 * is up from its first reply and down once no reply came for `downAfterMs`;
 * each change is logged once and told to listeners. The cluster store plays
 * no part: a host cut off from etcd whose data path answers stays up.
 *
 * Only replies count: a request proves the path one way only. A reply is
 * taken when it echoes a timestamp from within the last `downAfterMs`, so a
 * late or replayed one says nothing about the path now.
 */
import { PROBE_LEN, PROBE_REPLY, PROBE_REQUEST, encodeProbe, probeSequence, probeTimestamp, probeType } from '../wire/index.js';
import type { Datagram } from './io.js';
import { type Logger } from '../log.js';

/** Every ~300 ms, as BFD's common sub-second intervals: a dead path is noticed in about a second. */
export const DEFAULT_PROBE_INTERVAL_MS = 300;
/** About three lost probes in a row, as BFD's detect multiplier of 3. */
export const DEFAULT_DOWN_AFTER_MS = 1000;

/** `unknown`: not probed (an external peer, or no network served here shares it), or no verdict yet. */
export type PeerState = 'up' | 'down' | 'unknown';

export interface PeerLiveness {
  /** Underlay IPv4 of the peer VTEP. */
  readonly address: string;
  readonly state: PeerState;
  /** When the state last changed (for `unknown`, when probing began), in ms since the Unix epoch. */
  readonly since: number;
  /** The round trip of the last reply taken, in ms; absent before the first. */
  readonly rttMs?: number;
}

/** The clock and timer the probes run on, injected so tests can drive them. */
export interface LivenessTimers {
  /** Milliseconds since the Unix epoch, fractions allowed (an RTT is often well under 1 ms). */
  now(): number;
  /** Calls `tick` every `ms` until the returned function is called. */
  every(ms: number, tick: () => void): () => void;
}

/** The process's clock: epoch-based for `since`, monotonic underneath (performance.now) for RTTs. */
export const systemTimers: LivenessTimers = {
  now: () => performance.timeOrigin + performance.now(),
  every(ms, tick) {
    const timer = setInterval(tick, ms);
    // Probing alone must not keep a process alive.
    timer.unref();
    return () => clearInterval(timer);
  },
};

export interface LivenessOptions {
  /** Between two probes to one peer (default 300 ms). */
  intervalMs?: number;
  /** Without a reply this long, a peer is down (default 1000 ms). */
  downAfterMs?: number;
  timers?: LivenessTimers;
}

export interface LivenessParts extends LivenessOptions {
  /** The data-path port probes go to. */
  port: number;
  /** The netctl VTEPs to probe now (repeats allowed); read on every tick. */
  targets: () => Iterable<string>;
  /** True for a VTEP whose requests get replies: only netctl peers we know, so we reflect nothing to strangers. */
  knows: (address: string) => boolean;
  /** Sends probes; best effort, as UDP. */
  send: (datagrams: Datagram[]) => void;
  logger: Logger;
}

interface Peer {
  readonly address: string;
  state: PeerState;
  since: number;
  rttMs: number | undefined;
  /** The last reply taken or, before the first, when probing began. */
  heard: number;
  sequence: number;
}

export class Liveness {
  readonly #parts: LivenessParts;
  readonly #intervalMs: number;
  readonly #downAfterMs: number;
  readonly #timers: LivenessTimers;
  readonly #peers = new Map<string, Peer>();
  readonly #listeners = new Set<(peer: PeerLiveness) => void>();
  #cancel: (() => void) | undefined;

  constructor(parts: LivenessParts) {
    this.#parts = parts;
    this.#intervalMs = parts.intervalMs ?? DEFAULT_PROBE_INTERVAL_MS;
    this.#downAfterMs = parts.downAfterMs ?? DEFAULT_DOWN_AFTER_MS;
    this.#timers = parts.timers ?? systemTimers;
  }

  /** Starts probing; calling it again does nothing. */
  start(): void {
    this.#cancel ??= this.#timers.every(this.#intervalMs, () => this.#tick());
  }

  /** Stops probing and forgets every peer; later replies are ignored, later requests still answered. */
  stop(): void {
    this.#cancel?.();
    this.#cancel = undefined;
    this.#peers.clear();
  }

  /** A probed peer's state, or undefined when `address` is not probed. */
  get(address: string): PeerLiveness | undefined {
    const peer = this.#peers.get(address);
    return peer === undefined ? undefined : snapshot(peer);
  }

  /** Every probed peer. */
  all(): PeerLiveness[] {
    return [...this.#peers.values()].map(snapshot);
  }

  /**
   * Calls `listener` on every change of a peer's state, and with `unknown`
   * when a peer stops being probed. Returns the function that unsubscribes.
   */
  onChange(listener: (peer: PeerLiveness) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Takes a probe from `address` that passed `probeCheck`. */
  receive(data: Uint8Array, offset: number, address: string): void {
    if (probeType(data, offset) === PROBE_REQUEST) {
      if (!this.#parts.knows(address)) return;
      const reply = new Uint8Array(PROBE_LEN);
      encodeProbe({ type: PROBE_REPLY, sequence: probeSequence(data, offset), timestamp: probeTimestamp(data, offset), underlayMtu: 0 }, reply);
      this.#send([{ data: reply, address, port: this.#parts.port }]);
      return;
    }
    const peer = this.#peers.get(address);
    if (peer === undefined) return;
    const now = this.#timers.now();
    const rttMs = now - probeTimestamp(data, offset) / 1000;
    if (!(rttMs >= 0 && rttMs <= this.#downAfterMs)) return;
    peer.heard = now;
    peer.rttMs = rttMs;
    if (peer.state !== 'up') this.#change(peer, 'up', now, `is up (RTT ${formatRtt(rttMs)})`);
  }

  #tick(): void {
    const now = this.#timers.now();
    const targets = new Set(this.#parts.targets());
    for (const peer of this.#peers.values()) {
      if (targets.has(peer.address)) continue;
      this.#peers.delete(peer.address);
      this.#notify({ address: peer.address, state: 'unknown', since: now });
    }
    const probes: Datagram[] = [];
    const timestamp = Math.round(now * 1000);
    for (const address of targets) {
      let peer = this.#peers.get(address);
      if (peer === undefined) {
        peer = { address, state: 'unknown', since: now, rttMs: undefined, heard: now, sequence: 0 };
        this.#peers.set(address, peer);
      } else if (peer.state !== 'down' && now - peer.heard >= this.#downAfterMs) {
        this.#change(peer, 'down', now, `is down: no probe reply for ${Math.round(now - peer.heard)} ms`);
      }
      peer.sequence = (peer.sequence + 1) >>> 0;
      const data = new Uint8Array(PROBE_LEN);
      encodeProbe({ type: PROBE_REQUEST, sequence: peer.sequence, timestamp, underlayMtu: 0 }, data);
      probes.push({ data, address, port: this.#parts.port });
    }
    if (probes.length > 0) this.#send(probes);
  }

  #send(datagrams: Datagram[]): void {
    try {
      this.#parts.send(datagrams);
    } catch (err) {
      this.#parts.logger.warn(`VTEP probe send failed: ${String(err)}`);
    }
  }

  #change(peer: Peer, state: PeerState, now: number, what: string): void {
    peer.state = state;
    peer.since = now;
    this.#parts.logger.info(`VTEP peer ${peer.address} ${what}`);
    this.#notify(snapshot(peer));
  }

  #notify(peer: PeerLiveness): void {
    for (const listener of this.#listeners) {
      try {
        listener(peer);
      } catch (err) {
        this.#parts.logger.error(`VTEP peer state listener failed: ${String(err)}`);
      }
    }
  }
}

function snapshot(peer: Peer): PeerLiveness {
  return { address: peer.address, state: peer.state, since: peer.since, ...(peer.rttMs !== undefined && { rttMs: peer.rttMs }) };
}

/** `312µs`, `1.25ms`, `1.5s`: Go's time.Duration notation, rounded to the microsecond. */
export function formatRtt(ms: number): string {
  const us = Math.round(ms * 1000);
  if (us < 1000) return `${us}µs`;
  const trim = (text: string) => text.replace(/\.?0+$/, '');
  if (us < 1_000_000) return `${trim((us / 1000).toFixed(3))}ms`;
  return `${trim((us / 1_000_000).toFixed(6))}s`;
}
