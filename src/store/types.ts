/**
 * A revisioned key/value store, shaped after etcd's v3 model so that the
 * file store and an etcd store are interchangeable:
 * - every write bumps one store-wide revision; each key remembers the
 *   revision of its last write (`modRevision`);
 * - a transaction applies its puts and deletes atomically, only when every
 *   compare holds (compare-and-swap across several keys);
 * - watchers see every change under a prefix, in revision order.
 * Values are strings (JSON in practice).
 */
export interface KeyValue {
  readonly key: string;
  readonly value: string;
  /** Store revision of the last write to this key. */
  readonly modRevision: number;
}

export interface Compare {
  readonly key: string;
  /** Expected modRevision of the key; 0 means "the key must not exist". */
  readonly modRevision: number;
  /** Compare every key starting with `key`: with modRevision 0 (the only value allowed), "no such key exists". */
  readonly prefix?: boolean;
}

export interface TxnRequest {
  readonly compare?: readonly Compare[];
  readonly put?: readonly {
    readonly key: string;
    readonly value: string;
    /**
     * Tie the key to this store client's session: etcd deletes it when the
     * client's lease expires (the process died or lost the cluster for longer
     * than the lease TTL). Memory and file stores keep it until it is deleted.
     */
    readonly ephemeral?: boolean;
  }[];
  readonly delete?: readonly string[];
}

export interface TxnResult {
  /** False when a compare failed; nothing was written then. */
  readonly succeeded: boolean;
  /** Store revision after the transaction (unchanged when it failed). */
  readonly revision: number;
}

export type WatchEvent =
  | { readonly type: 'put'; readonly kv: KeyValue }
  | { readonly type: 'delete'; readonly key: string; readonly modRevision: number };

export interface WatchOptions {
  /** Deliver the changes made after this store revision (rather than after the watch starts). */
  readonly fromRevision?: number;
}

export interface Watch {
  /** Stops delivery; no callback runs after it resolves. */
  cancel(): Promise<void>;
}

export interface Store {
  get(key: string): Promise<KeyValue | undefined>;
  /** Every key starting with `prefix`, sorted by key. */
  list(prefix: string): Promise<KeyValue[]>;
  txn(request: TxnRequest): Promise<TxnResult>;
  /**
   * Calls `onEvent` for each change under `prefix` made after the watch
   * starts, or, with `fromRevision`, for each change after that revision (so
   * a reader that knows a revision, from a txn or the newest `modRevision` it
   * listed, misses nothing in between). Stores that keep no history may
   * ignore `fromRevision`.
   */
  watch(prefix: string, onEvent: (event: WatchEvent) => void, options?: WatchOptions): Promise<Watch>;
  /** Releases resources; every later call but `close` rejects with `StoreClosed`; closing again is harmless. */
  close(): Promise<void>;
}

export { StoreClosed, StoreCorrupt } from '../errors.js';
