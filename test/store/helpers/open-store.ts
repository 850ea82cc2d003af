// The store the helper processes open: NETCTL_TEST_STORE=sqlite for the SQLite store, the file store otherwise.
import { FileStore } from '../../../src/store/file.js';
import { SqliteStore } from '../../../src/store/sqlite.js';
import type { Store } from '../../../src/store/types.js';

export function openTestStore(dir: string): Promise<Store> {
  return process.env['NETCTL_TEST_STORE'] === 'sqlite' ? SqliteStore.open(dir) : FileStore.open(dir);
}
