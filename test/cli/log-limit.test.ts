import test from 'ava';
import { LogLimiter, type LogTimers } from '../../src/cli/log-limit.js';

/** Timers on a clock the test moves by hand. */
class ManualClock implements LogTimers {
  now = 0;
  readonly #pending = new Map<number, { at: number; callback: () => void }>();
  #nextId = 0;

  setTimeout(callback: () => void, ms: number): unknown {
    this.#nextId += 1;
    this.#pending.set(this.#nextId, { at: this.now + ms, callback });
    return this.#nextId;
  }

  clearTimeout(timer: unknown): void {
    this.#pending.delete(timer as number);
  }

  /** Moves the clock on, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      const due = [...this.#pending].filter(([, timer]) => timer.at <= until).sort(([, a], [, b]) => a.at - b.at)[0];
      if (due === undefined) break;
      const [id, timer] = due;
      this.#pending.delete(id);
      this.now = timer.at;
      timer.callback();
    }
    this.now = until;
  }

  get pending(): number {
    return this.#pending.size;
  }
}

function limiter(options: { maxTracked?: number } = {}) {
  const clock = new ManualClock();
  const lines: string[] = [];
  const log = new LogLimiter({ write: (line) => lines.push(line), windowMs: 10_000, timers: clock, ...options });
  return { clock, lines, log };
}

test('a line repeated within the window is written once, then summarized when the window ends', (t) => {
  const { clock, lines, log } = limiter();
  for (let i = 0; i < 8000; i++) log.log('dns: upstream 192.0.2.1:53 (udp): connect ECONNREFUSED');
  log.log('another line');
  t.deepEqual(lines, ['dns: upstream 192.0.2.1:53 (udp): connect ECONNREFUSED', 'another line']);
  clock.advance(9_999);
  t.is(lines.length, 2, 'nothing before the window ends');
  clock.advance(1);
  t.deepEqual(lines.slice(2), ['dns: upstream 192.0.2.1:53 (udp): connect ECONNREFUSED (7999 more like this suppressed)']);
});

test('a steady flood costs one summary per window; a quiet window closes it and the line is written again', (t) => {
  const { clock, lines, log } = limiter();
  for (let second = 0; second < 30; second++) {
    for (let i = 0; i < 100; i++) log.log('flood');
    clock.advance(1000);
  }
  t.deepEqual(lines, [
    'flood',
    'flood (999 more like this suppressed)',
    'flood (1000 more like this suppressed)',
    'flood (1000 more like this suppressed)',
  ]);
  clock.advance(10_000);
  t.is(lines.length, 4, 'a window without repeats ends silently');
  t.is(clock.pending, 0, 'and leaves no timer behind');
  log.log('flood');
  t.is(lines.at(-1), 'flood', 'written again after a quiet window');
});

test('a line seen once leaves no summary', (t) => {
  const { clock, lines, log } = limiter();
  log.log('once');
  clock.advance(60_000);
  t.deepEqual(lines, ['once']);
  t.is(clock.pending, 0);
});

test('flush writes the open summaries and cancels their timers', (t) => {
  const { clock, lines, log } = limiter();
  log.log('a');
  log.log('a');
  log.log('b');
  log.flush();
  t.deepEqual(lines, ['a', 'b', 'a (1 more like this suppressed)']);
  t.is(clock.pending, 0);
  log.log('a');
  t.is(lines.at(-1), 'a', 'a new window after the flush');
});

test('beyond maxTracked distinct lines, lines are written as they come', (t) => {
  const { clock, lines, log } = limiter({ maxTracked: 2 });
  for (const line of ['a', 'b', 'c', 'c', 'a']) log.log(line);
  t.deepEqual(lines, ['a', 'b', 'c', 'c']);
  t.is(clock.pending, 2);
});
