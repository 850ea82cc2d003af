/**
 * Repeated log lines, printed once per window. A flood (an unreachable
 * upstream failing every forward, thousands of times a second) then costs
 * the log one line and one summary per window instead of a line per event.
 */

/** The timers the limiter uses; injected in tests. */
export interface LogTimers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
}

export interface LogLimiterOptions {
  /** Where lines go, without a trailing newline. */
  readonly write: (line: string) => void;
  /** Default 10 000 ms. */
  readonly windowMs?: number;
  /** Distinct lines followed at once; lines beyond are written as they come, so memory stays bounded. Default 1000. */
  readonly maxTracked?: number;
  /** Default: Node's, unref'd, so pending summaries never keep the process alive. */
  readonly timers?: LogTimers;
}

interface Window {
  suppressed: number;
  timer: unknown;
}

const nodeTimers: LogTimers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms).unref(),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout),
};

/**
 * The first time a line comes it is written and a window opens; the same
 * line again within the window is counted, not written. When a window ends
 * with a count, "LINE (N more like this suppressed)" is written and another
 * window opens, so a steady flood costs one line per window; a window that
 * ends with none closes, and the line is written again the next time.
 */
export class LogLimiter {
  readonly #write: (line: string) => void;
  readonly #windowMs: number;
  readonly #maxTracked: number;
  readonly #timers: LogTimers;
  readonly #windows = new Map<string, Window>();

  constructor(options: LogLimiterOptions) {
    this.#write = options.write;
    this.#windowMs = options.windowMs ?? 10_000;
    this.#maxTracked = options.maxTracked ?? 1000;
    this.#timers = options.timers ?? nodeTimers;
  }

  log(line: string): void {
    const window = this.#windows.get(line);
    if (window !== undefined) {
      window.suppressed += 1;
      return;
    }
    this.#write(line);
    if (this.#windows.size < this.#maxTracked) this.#windows.set(line, { suppressed: 0, timer: this.#schedule(line) });
  }

  /** Writes the summaries of the windows still open and closes them all (at shutdown). */
  flush(): void {
    for (const [line, window] of this.#windows) {
      this.#timers.clearTimeout(window.timer);
      this.#summarize(line, window);
    }
    this.#windows.clear();
  }

  #schedule(line: string): unknown {
    return this.#timers.setTimeout(() => this.#windowEnded(line), this.#windowMs);
  }

  #windowEnded(line: string): void {
    const window = this.#windows.get(line);
    if (window === undefined) return;
    if (window.suppressed === 0) {
      this.#windows.delete(line);
      return;
    }
    this.#summarize(line, window);
    window.suppressed = 0;
    window.timer = this.#schedule(line);
  }

  #summarize(line: string, window: Window): void {
    if (window.suppressed > 0) this.#write(`${line} (${window.suppressed} more like this suppressed)`);
  }
}
