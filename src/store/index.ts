/**
 * The store/ folder: revisioned key/value stores with one interface
 * (types.ts): SQLite for the embedded default (sqlite.ts), etcd for the
 * cluster (etcd*.ts: URL, TLS and users, calls and retries, the lease of
 * ephemeral keys, watches, compaction), a last-known view of the cluster for
 * outages (last-known.ts), the JSON file store of earlier versions (file.ts;
 * the SQLite store imports its state), an in-memory one for tests, and a
 * metrics wrapper (observed.ts).
 */
export type {
  Compare,
  KeyValue,
  Store,
  TxnRequest,
  TxnResult,
  Watch,
  WatchEvent,
  WatchOptions,
} from './types.js';
export { StoreClosed, StoreCorrupt } from './types.js';
export { MemoryStore } from './memory.js';
export { FileStore } from './file.js';
export type { FileStoreOptions } from './file.js';
export { SqliteStore } from './sqlite.js';
export type { SqliteStoreOptions } from './sqlite.js';
export { EtcdStore } from './etcd.js';
export type { EtcdStoreOptions } from './etcd.js';
export { LockTimeout } from '../sys/fslock.js';
