/**
 * One watch of the etcd store on a prefix: follows etcd's watch stream
 * (etcd3 resumes it after a reconnect from the last revision it saw), and
 * when etcd cancels it because that revision was compacted away meanwhile,
 * catches up from a fresh list (puts for what changed, deletes for what
 * went) and follows again from the list's revision.
 */
import type { Etcd3, IWatchResponse, Watcher } from 'etcd3';
import type { Logger } from '../log.js';
import type { KeyValue, WatchEvent } from './types.js';

/** What a watch needs of its store. */
export interface WatchContext {
  readonly client: Etcd3;
  /** The store's key prefix, which keys given to callers lack. */
  readonly keyPrefix: string;
  readonly logger: Logger;
  listAt(prefix: string, keysOnly: boolean): Promise<{ kvs: KeyValue[]; revision: number }>;
  cancelWatcher(watcher: Watcher): Promise<void>;
  isClosed(): boolean;
  /** A watch lost its stream, or got it back (or stopped without): the store logs once for all its watches. */
  streamLost(err: Error): void;
  streamBack(reconnected: boolean): void;
}

export class PrefixWatch {
  #active = true;
  /** The etcd watcher now following the prefix; replaced when a catch-up starts a new one. */
  #watcher: Watcher | undefined;
  #disconnected = false;
  /** The keys under the prefix as last delivered, with their modRevision: what a catch-up compares a fresh list with. */
  readonly #known = new Map<string, number>();

  constructor(
    private readonly context: WatchContext,
    private readonly prefix: string,
    private readonly onEvent: (event: WatchEvent) => void,
  ) {}

  /**
   * Starts following from `startRevision` (default: now); resolves once etcd
   * created the watch and the keys there were then are known.
   */
  async start(startRevision?: number): Promise<void> {
    await this.#attach(startRevision);
    for (const kv of (await this.context.listAt(this.prefix, true)).kvs) if (!this.#known.has(kv.key)) this.#known.set(kv.key, kv.modRevision);
  }

  /** Stops for good; nothing is delivered after it resolves. */
  async stop(): Promise<void> {
    if (!this.#active) return;
    this.#active = false;
    if (this.#disconnected) this.context.streamBack(false);
    if (this.#watcher !== undefined) await this.context.cancelWatcher(this.#watcher);
  }

  #deliver(event: WatchEvent): void {
    if (event.type === 'put') this.#known.set(event.kv.key, event.kv.modRevision);
    else this.#known.delete(event.key);
    try {
      this.onEvent(event);
    } catch (err) {
      // Like an EventEmitter listener: the caller's bug surfaces, the watch keeps going.
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  /** Starts an etcd watcher; resolves once etcd created it. */
  #attach(startRevision?: number): Promise<void> {
    const builder = this.context.client.watch().prefix(Buffer.from(this.context.keyPrefix + this.prefix));
    if (startRevision !== undefined) builder.startRevision(String(startRevision));
    // watcher() rather than create(): a watch whose creation times out must still be cancellable.
    const watcher = builder.watcher();
    this.#watcher = watcher;
    const current = () => this.#active && this.#watcher === watcher;
    watcher.on('data', (response: IWatchResponse) => {
      for (const event of response.events) {
        if (!current()) return;
        const key = event.kv.key.toString().slice(this.context.keyPrefix.length);
        const modRevision = Number(event.kv.mod_revision);
        // etcd3 decodes the event type with the proto enum names (PUT, DELETE), not its TypeScript names.
        this.#deliver(
          String(event.type).toUpperCase() === 'DELETE'
            ? { type: 'delete', key, modRevision }
            : { type: 'put', kv: Object.freeze({ key, value: event.kv.value.toString(), modRevision }) },
        );
      }
    });
    watcher.on('disconnected', (err: Error) => {
      if (!this.#active || this.#disconnected) return;
      this.#disconnected = true;
      this.context.streamLost(err);
    });
    watcher.on('connected', () => {
      if (!this.#active || !this.#disconnected) return;
      this.#disconnected = false;
      this.context.streamBack(true);
    });
    let created = false;
    return new Promise<void>((resolve, reject) => {
      watcher.once('connected', () => {
        created = true;
        resolve();
      });
      watcher.on('error', (err: Error) => {
        if (!created) reject(err);
        // etcd cancels a watch whose resume revision was compacted away, without a reason: catch up by listing.
        else if (current()) void this.#catchUp(err);
      });
    });
  }

  /** Retries while etcd is out of reach, until the watch or the store is closed. */
  async #catchUp(cause: Error): Promise<void> {
    const { logger } = this.context;
    const what = JSON.stringify(this.prefix);
    logger.warn(`etcd cancelled the watch on ${what} (${cause.message.replace(/: $/, '') || 'compacted'}); catching up from a fresh list`);
    if (this.#watcher !== undefined) await this.context.cancelWatcher(this.#watcher);
    for (let delayMs = 100; this.#active && !this.context.isClosed(); delayMs = Math.min(2 * delayMs, 2000)) {
      try {
        const { kvs, revision } = await this.context.listAt(this.prefix, false);
        if (!this.#active) return;
        const present = new Set<string>();
        for (const kv of kvs) {
          present.add(kv.key);
          if (this.#known.get(kv.key) !== kv.modRevision) this.#deliver({ type: 'put', kv });
        }
        for (const key of [...this.#known.keys()]) if (!present.has(key)) this.#deliver({ type: 'delete', key, modRevision: revision });
        // A failure to create the new watcher comes back through its error handler.
        this.#attach(revision + 1).catch(() => undefined);
        logger.info(`etcd watch on ${what} caught up at revision ${revision}`);
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }
}
