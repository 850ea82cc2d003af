import { StoreClosed } from './types.js';
import { validateTxn } from './validate.js';
import type { KeyValue, Store, TxnRequest, TxnResult, Watch, WatchEvent } from './types.js';

/** The store's content at one revision. Maps are never mutated once built. */
export interface Snapshot {
  readonly revision: number;
  readonly entries: ReadonlyMap<string, KeyValue>;
}

export const emptySnapshot: Snapshot = { revision: 0, entries: new Map() };

export interface TxnOutcome {
  readonly succeeded: boolean;
  /** The new snapshot; the same object as the input when nothing changed. */
  readonly snapshot: Snapshot;
  /** The changes, all at `snapshot.revision`, puts in request order then deletes. */
  readonly events: readonly WatchEvent[];
}

/**
 * Applies a transaction the way etcd does: every compare must hold, all
 * writes share one new revision, and a transaction that changes nothing
 * (no puts, only deletes of missing keys) leaves the revision alone.
 * A key may appear once among the puts and deletes (etcd rejects duplicates too).
 */
export function applyTxn(before: Snapshot, request: TxnRequest): TxnOutcome {
  validateTxn(request);
  for (const compare of request.compare ?? []) {
    const holds =
      compare.prefix === true
        ? ![...before.entries.keys()].some((key) => key.startsWith(compare.key))
        : (before.entries.get(compare.key)?.modRevision ?? 0) === compare.modRevision;
    if (!holds) return { succeeded: false, snapshot: before, events: [] };
  }
  const puts = request.put ?? [];
  const deletes = (request.delete ?? []).filter((key) => before.entries.has(key));
  if (puts.length === 0 && deletes.length === 0) return { succeeded: true, snapshot: before, events: [] };

  const revision = before.revision + 1;
  const entries = new Map(before.entries);
  const events: WatchEvent[] = [];
  for (const { key, value } of puts) {
    const kv: KeyValue = Object.freeze({ key, value, modRevision: revision });
    entries.set(key, kv);
    events.push({ type: 'put', kv });
  }
  for (const key of deletes) {
    entries.delete(key);
    events.push({ type: 'delete', key, modRevision: revision });
  }
  return { succeeded: true, snapshot: { revision, entries }, events };
}

/** Every key of `snapshot` starting with `prefix`, sorted by key. */
export function listPrefix(snapshot: Snapshot, prefix: string): KeyValue[] {
  const found: KeyValue[] = [];
  for (const kv of snapshot.entries.values()) if (kv.key.startsWith(prefix)) found.push(kv);
  return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

function eventKey(event: WatchEvent): string {
  return event.type === 'put' ? event.kv.key : event.key;
}

interface Watcher {
  readonly prefix: string;
  readonly onEvent: (event: WatchEvent) => void;
  active: boolean;
}

/** The watchers of one store; delivery is synchronous and in the order given. */
export class WatcherSet {
  readonly #watchers = new Set<Watcher>();

  get size(): number {
    return this.#watchers.size;
  }

  add(prefix: string, onEvent: (event: WatchEvent) => void, onCancel?: () => void): Watch {
    const watcher: Watcher = { prefix, onEvent, active: true };
    this.#watchers.add(watcher);
    return {
      cancel: async () => {
        if (!watcher.active) return;
        watcher.active = false;
        this.#watchers.delete(watcher);
        onCancel?.();
      },
    };
  }

  dispatch(events: readonly WatchEvent[]): void {
    if (events.length === 0) return;
    for (const watcher of [...this.#watchers]) {
      for (const event of events) {
        // A callback may cancel its own or another watch mid-batch.
        if (!watcher.active) break;
        if (!eventKey(event).startsWith(watcher.prefix)) continue;
        try {
          watcher.onEvent(event);
        } catch (err) {
          // Like an EventEmitter listener: the caller's bug surfaces, the store keeps going.
          queueMicrotask(() => {
            throw err;
          });
        }
      }
    }
  }

  clear(): void {
    for (const watcher of this.#watchers) watcher.active = false;
    this.#watchers.clear();
  }
}

/**
 * An in-process store with the same semantics as the file and etcd stores, for tests of upper layers.
 * It has no client sessions, so `ephemeral` puts stay until deleted, and it keeps no history, so
 * `watch` ignores `fromRevision` and starts at the current revision.
 */
export class MemoryStore implements Store {
  #snapshot: Snapshot = emptySnapshot;
  #closed = false;
  readonly #watchers = new WatcherSet();

  async get(key: string): Promise<KeyValue | undefined> {
    this.#assertOpen();
    return this.#snapshot.entries.get(key);
  }

  async list(prefix: string): Promise<KeyValue[]> {
    this.#assertOpen();
    return listPrefix(this.#snapshot, prefix);
  }

  async txn(request: TxnRequest): Promise<TxnResult> {
    this.#assertOpen();
    const outcome = applyTxn(this.#snapshot, request);
    this.#snapshot = outcome.snapshot;
    this.#watchers.dispatch(outcome.events);
    return { succeeded: outcome.succeeded, revision: outcome.snapshot.revision };
  }

  async watch(prefix: string, onEvent: (event: WatchEvent) => void): Promise<Watch> {
    this.#assertOpen();
    return this.#watchers.add(prefix, onEvent);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#watchers.clear();
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreClosed();
  }
}
