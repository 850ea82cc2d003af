/**
 * A Store that reports how long each operation took and whether it failed,
 * so the daemon can export store latency and errors without the stores
 * knowing about metrics. Results and errors pass through unchanged.
 */
import type { KeyValue, Store, TxnRequest, TxnResult, Watch, WatchEvent, WatchOptions } from './types.js';

export type StoreOperation = 'get' | 'list' | 'txn' | 'watch';

/** Told once per operation when it settles: its duration in seconds, and the error when it failed. */
export type StoreObserver = (operation: StoreOperation, seconds: number, error?: unknown) => void;

export class ObservedStore implements Store {
  readonly #inner: Store;
  readonly #observe: StoreObserver;

  constructor(inner: Store, observe: StoreObserver) {
    this.#inner = inner;
    this.#observe = observe;
  }

  get(key: string): Promise<KeyValue | undefined> {
    return this.#timed('get', () => this.#inner.get(key));
  }

  list(prefix: string): Promise<KeyValue[]> {
    return this.#timed('list', () => this.#inner.list(prefix));
  }

  txn(request: TxnRequest): Promise<TxnResult> {
    return this.#timed('txn', () => this.#inner.txn(request));
  }

  /** Times setting the watch up; the events themselves pass straight through. */
  watch(prefix: string, onEvent: (event: WatchEvent) => void, options?: WatchOptions): Promise<Watch> {
    return this.#timed('watch', () => this.#inner.watch(prefix, onEvent, options));
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  async #timed<T>(operation: StoreOperation, call: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      const result = await call();
      this.#observe(operation, (performance.now() - start) / 1000);
      return result;
    } catch (err) {
      this.#observe(operation, (performance.now() - start) / 1000, err);
      throw err;
    }
  }
}
