/** A clock and interval timer that move only when a test says so, for the VTEP's liveness probes. */
import type { LivenessTimers } from '../../src/vxlan/liveness.js';

interface Interval {
  readonly ms: number;
  readonly tick: () => void;
  next: number;
}

export class ManualTimers implements LivenessTimers {
  #now: number;
  readonly #intervals = new Set<Interval>();

  constructor(start = Date.UTC(2025, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  every(ms: number, tick: () => void): () => void {
    const interval: Interval = { ms, tick, next: this.#now + ms };
    this.#intervals.add(interval);
    return () => this.#intervals.delete(interval);
  }

  /** Intervals running now. */
  get running(): number {
    return this.#intervals.size;
  }

  /** Moves the clock by `ms`, running every tick that falls due on the way, in time order. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      let due: Interval | undefined;
      for (const interval of this.#intervals) if (interval.next <= end && (due === undefined || interval.next < due.next)) due = interval;
      if (due === undefined) break;
      this.#now = due.next;
      due.next += due.ms;
      due.tick();
    }
    this.#now = end;
  }
}
