// Child process for the first-open race: `create-after-lock.ts DIR` holds the
// write lock of a new DIR/store.db, prints "locked", and after HOLD ms lets
// go and opens the SQLite store itself, so it creates the tables while the
// parent, which read the schema version before the lock was free, still waits.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../../src/store/sqlite.js';

const [dir, holdText] = process.argv.slice(2);
if (dir === undefined || holdText === undefined) throw new Error('usage: create-after-lock.ts DIR HOLD_MS');
mkdirSync(dir, { recursive: true, mode: 0o700 });
const holder = new Database(join(dir, 'store.db'));
holder.pragma('journal_mode = WAL');
holder.exec('BEGIN IMMEDIATE');
process.stdout.write('locked\n');
setTimeout(() => {
  holder.exec('ROLLBACK');
  holder.close();
  void SqliteStore.open(dir).then(async (store) => {
    await store.txn({ put: [{ key: 'child', value: 'opened' }] });
    await store.close();
    process.stdout.write('created\n');
  });
}, Number(holdText));
