export type {
  Compare,
  KeyValue,
  Store,
  TxnRequest,
  TxnResult,
  Watch,
  WatchEvent,
} from './types.js';
export { StoreClosed, StoreCorrupt } from './types.js';
export { MemoryStore } from './memory.js';
export { FileStore } from './file.js';
export type { FileStoreOptions } from './file.js';
export { LockTimeout } from '../sys/fslock.js';
