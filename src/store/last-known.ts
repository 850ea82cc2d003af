/**
 * A cluster store that remembers what it last saw, so that work which only
 * reads it (listing networks, checking a name or a subnet before a local
 * network is made, numbering a sandbox's interfaces) goes on while the
 * cluster is out of reach, instead of waiting for a timeout on every call.
 *
 * - It follows a few prefixes with watches and keeps their keys in memory.
 * - While the store answers, every call goes to it, so reads are as fresh
 *   and consistent as the store's own.
 * - When a call fails with Unavailable, the store is marked out of reach and
 *   probed in the background until it answers again. Meanwhile reads of the
 *   followed prefixes answer from memory at once. Writes and other reads
 *   still go to the store: a write needs it anyway, and one slow call under
 *   load must not fail the writes of the next second.
 * - The watches resume on their own when the store is back (the store's
 *   watches replay what they missed), and `onReachable` callbacks run.
 */
import { Unavailable } from '../errors.js';
import type { KeyValue, Store, TxnRequest, TxnResult, Watch, WatchEvent, WatchOptions } from './types.js';
import { type Logger, silentLogger } from '../log.js';

export interface LastKnownStoreOptions {
  /** Key prefixes remembered and served while the store is out of reach. */
  readonly prefixes: readonly string[];
  /** How often an unreachable store is tried again; default 1000 ms. */
  readonly probeIntervalMs?: number;
  /** A read the probe makes; default a get of one key. */
  readonly probe?: (store: Store) => Promise<unknown>;
  readonly logger?: Logger;
  readonly now?: () => Date;
}

export interface ReachabilityStatus {
  readonly reachable: boolean;
  /** When the store last answered, while it is out of reach (RFC 3339). */
  readonly lastReached?: string;
}

export class LastKnownStore implements Store {
  readonly #inner: Store;
  readonly #prefixes: readonly string[];
  readonly #probeIntervalMs: number;
  readonly #probe: (store: Store) => Promise<unknown>;
  readonly #logger: Logger;
  readonly #now: () => Date;
  readonly #entries = new Map<string, KeyValue>();
  readonly #watches: Watch[] = [];
  readonly #onReachable = new Set<() => void>();
  #lastReached: Date;
  #reachable = true;
  #probeTimer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(inner: Store, options: LastKnownStoreOptions) {
    this.#inner = inner;
    this.#prefixes = options.prefixes;
    this.#probeIntervalMs = options.probeIntervalMs ?? 1000;
    this.#probe = options.probe ?? ((store) => store.get('names/networks/'));
    this.#logger = options.logger ?? silentLogger;
    this.#now = options.now ?? (() => new Date());
    this.#lastReached = this.#now();
  }

  /** Starts following the prefixes; the store must answer now. */
  static async open(inner: Store, options: LastKnownStoreOptions): Promise<LastKnownStore> {
    const store = new LastKnownStore(inner, options);
    try {
      for (const prefix of options.prefixes) await store.#follow(prefix);
    } catch (err) {
      await store.#stopFollowing();
      throw err;
    }
    return store;
  }

  status(): ReachabilityStatus {
    return this.#reachable ? { reachable: true } : { reachable: false, lastReached: this.#lastReached.toISOString() };
  }

  /** Calls `callback` each time the store answers again after being out of reach. Returns an unsubscribe. */
  onReachable(callback: () => void): () => void {
    this.#onReachable.add(callback);
    return () => this.#onReachable.delete(callback);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    return this.#read(key, () => this.#inner.get(key), () => this.#entries.get(key));
  }

  async list(prefix: string): Promise<KeyValue[]> {
    return this.#read(prefix, () => this.#inner.list(prefix), () =>
      [...this.#entries.values()].filter((kv) => kv.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
    );
  }

  async txn(request: TxnRequest): Promise<TxnResult> {
    return this.#call(() => this.#inner.txn(request));
  }

  watch(prefix: string, onEvent: (event: WatchEvent) => void, options?: WatchOptions): Promise<Watch> {
    return this.#inner.watch(prefix, onEvent, options);
  }

  /** Stops following and probing, and closes the inner store. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#stopFollowing();
    await this.#inner.close();
  }

  async #follow(prefix: string): Promise<void> {
    const seen = new Set<string>();
    this.#watches.push(
      await this.#inner.watch(prefix, (event) => {
        if (event.type === 'put') {
          seen.add(event.kv.key);
          this.#entries.set(event.kv.key, event.kv);
        } else {
          seen.add(event.key);
          this.#entries.delete(event.key);
        }
      }),
    );
    for (const kv of await this.#inner.list(prefix)) if (!seen.has(kv.key)) this.#entries.set(kv.key, kv);
  }

  async #stopFollowing(): Promise<void> {
    if (this.#probeTimer !== undefined) clearTimeout(this.#probeTimer);
    this.#probeTimer = undefined;
    for (const watch of this.#watches.splice(0)) await watch.cancel().catch(() => undefined);
  }

  #remembers(keyOrPrefix: string): boolean {
    return this.#prefixes.some((prefix) => keyOrPrefix.startsWith(prefix));
  }

  async #read<T>(keyOrPrefix: string, fromStore: () => Promise<T>, fromMemory: () => T): Promise<T> {
    const remembered = this.#remembers(keyOrPrefix);
    if (!this.#reachable && remembered) return fromMemory();
    try {
      return await this.#call(fromStore);
    } catch (err) {
      if (isUnreachable(err) && remembered) return fromMemory();
      throw err;
    }
  }

  async #call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      const result = await fn();
      this.#lastReached = this.#now();
      return result;
    } catch (err) {
      if (isUnreachable(err)) this.#markUnreachable(err);
      throw err;
    }
  }

  #markUnreachable(err: Error): void {
    if (!this.#reachable || this.#closed) return;
    this.#reachable = false;
    this.#logger.warn(`cluster store out of reach (${err.message}); local networks go on, global ones are shown as last seen`);
    this.#scheduleProbe();
  }

  #scheduleProbe(): void {
    if (this.#closed) return;
    this.#probeTimer = setTimeout(() => {
      this.#probeTimer = undefined;
      void this.#probe(this.#inner).then(
        () => {
          if (this.#closed) return;
          this.#reachable = true;
          this.#lastReached = this.#now();
          this.#logger.info('cluster store reachable again');
          for (const callback of this.#onReachable) callback();
        },
        () => this.#scheduleProbe(),
      );
    }, this.#probeIntervalMs);
    this.#probeTimer.unref();
  }
}

/** Out of reach, as opposed to closed under us or any other refusal. */
function isUnreachable(err: unknown): err is Unavailable {
  return err instanceof Unavailable && err.code === 'Unavailable';
}
