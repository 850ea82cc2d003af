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
