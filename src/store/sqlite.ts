/**
 * The embedded store on SQLite (better-sqlite3), in WAL mode: one database
 * file in the state directory, crash-safe as SQLite is (a kill -9 or a power
 * cut leaves the last committed transaction), each transaction O(log N) in
 * the number of records.
 *
 * Tables:
 * - `kv`: the live keys with their value and modRevision.
 * - `meta`: the store-wide revision (and the revision a FileStore state was
 *   migrated at).
 * - `changes`: one row per put or delete of the last CHANGE_WINDOW revisions,
 *   so that `watch(…, { fromRevision })` and watchers in other processes
 *   replay changes exactly. Older rows are pruned as new ones come.
 *
 * better-sqlite3 is synchronous: a transaction runs on the caller's thread.
 * With synchronous=FULL a commit costs one fsync of the WAL (a fraction of a
 * millisecond here) and never rewrites more than the pages it touched; that
 * is cheaper than a worker round trip would make it, so it stays inline.
 */
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { readStateFile, STATE_FILE } from './file.js';
import { WatcherSet } from './memory.js';
import { LockTimeout } from '../errors.js';
import { StoreClosed, StoreCorrupt } from './types.js';
import type { KeyValue, Store, TxnRequest, TxnResult, Watch, WatchEvent, WatchOptions } from './types.js';
import { validateTxn } from './validate.js';

export const DATABASE_FILE = 'store.db';
/** Suffix a migrated FileStore state file is renamed with; it is kept for the operator, never read again. */
export const MIGRATED_SUFFIX = '.migrated';
/** Bumped when the tables change shape; a newer database is refused rather than misread. */
const SCHEMA_VERSION = 1;
/** How many revisions of changes are kept for replay. */
const CHANGE_WINDOW = 1_000;
/** Prune the change log every this many revisions, not on every commit. */
const PRUNE_EVERY = 64;
const DEFAULT_POLL_INTERVAL_MS = 250;
const DEFAULT_BUSY_TIMEOUT_MS = 10_000;
/**
 * Sorts after every character a key can hold: keys compare as UTF-8 bytes
 * in SQLite, and U+10FFFF is the largest code point (F4 8F BF BF).
 */
const PREFIX_END = '\u{10FFFF}';

export interface SqliteStoreOptions {
  /** How long a transaction waits for another process's write lock; default 10 000 ms. */
  readonly busyTimeoutMs?: number;
  /** How often watchers look for other processes' commits; default 250 ms. */
  readonly pollIntervalMs?: number;
}

interface ChangeRow {
  readonly revision: number;
  readonly key: string;
  readonly value: string | null;
}

interface KvRow {
  readonly key: string;
  readonly value: string;
  readonly mod_revision: number;
}

/**
 * The embedded store. Several processes may open one directory: SQLite
 * serialises their transactions, and each instance's watchers get the other
 * processes' changes from the change log (looked for every pollIntervalMs
 * while a watch is open, and before every read). There are no client
 * sessions: `ephemeral` puts stay until deleted.
 *
 * A watcher that falls more than CHANGE_WINDOW revisions behind (or a
 * `fromRevision` older than the log) gets the puts of every key changed
 * since then, but not the deletes in the part of the log already pruned.
 */
export class SqliteStore implements Store {
  readonly #path: string;
  readonly #db: Database.Database;
  readonly #pollIntervalMs: number;
  readonly #busyTimeoutMs: number;
  readonly #statements: ReturnType<typeof prepare>;
  readonly #watchers = new WatcherSet();
  /** The revision this instance's watchers have been told about. */
  #seen: number;
  /** SQLite's data_version when #seen was last brought up to date: it changes when another connection commits. */
  #dataVersion: number;
  #pollTimer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #txn: Database.Transaction<(request: TxnRequest) => { succeeded: boolean; revision: number; events: WatchEvent[] }>;

  private constructor(path: string, db: Database.Database, options: SqliteStoreOptions) {
    this.#path = path;
    this.#db = db;
    this.#pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this.#busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    this.#statements = prepare(db);
    this.#seen = this.#revision();
    this.#dataVersion = this.#readDataVersion();
    this.#txn = db.transaction((request: TxnRequest) => this.#apply(request));
  }

  /**
   * Opens the store in `dir` (created if missing). A FileStore state file
   * found there is imported once and renamed `store.json.migrated`. Rejects
   * with StoreCorrupt when the database cannot be read.
   */
  static async open(dir: string, options: SqliteStoreOptions = {}): Promise<SqliteStore> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, DATABASE_FILE);
    // SQLite creates files with the process umask; made 0600 first, the -wal and -shm files follow its mode.
    closeSync(openSync(path, 'a', 0o600));
    let db: Database.Database;
    try {
      db = new Database(path, { timeout: options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS });
      initialise(db, path);
    } catch (err) {
      throw asSqliteError(err, path, options.busyTimeoutMs);
    }
    try {
      await migrateFileState(db, dir);
      return new SqliteStore(path, db, options);
    } catch (err) {
      db.close();
      throw asSqliteError(err, path, options.busyTimeoutMs);
    }
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.#assertOpen();
    this.#catchUpIfChanged();
    const row = this.#statements.get.get(key) as KvRow | undefined;
    return row === undefined ? undefined : toKeyValue(row);
  }

  async list(prefix: string): Promise<KeyValue[]> {
    this.#assertOpen();
    this.#catchUpIfChanged();
    const rows = this.#statements.range.all(prefix, prefix + PREFIX_END) as KvRow[];
    return rows.map(toKeyValue);
  }

  async txn(request: TxnRequest): Promise<TxnResult> {
    this.#assertOpen();
    validateTxn(request);
    // A commit runs on this thread and waits for its fsync. Chained awaits of
    // calls that never wait would hold the loop for a whole burst of changes;
    // a turn of the loop first lets DNS queries and API reads in between.
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.#assertOpen();
    // Changes other processes committed since the last look come first in this instance's watches.
    this.#catchUpIfChanged();
    let outcome;
    try {
      outcome = this.#txn.immediate(request);
    } catch (err) {
      throw asSqliteError(err, this.#path, this.#busyTimeoutMs);
    }
    if (outcome.events.length > 0) {
      if (outcome.revision === this.#seen + 1) {
        this.#seen = outcome.revision;
        this.#watchers.dispatch(outcome.events);
      } else {
        // Another process committed between the look above and this transaction: replay in order.
        this.#catchUp();
      }
      this.#dataVersion = this.#readDataVersion();
    }
    return { succeeded: outcome.succeeded, revision: outcome.revision };
  }

  async watch(prefix: string, onEvent: (event: WatchEvent) => void, options: WatchOptions = {}): Promise<Watch> {
    this.#assertOpen();
    this.#catchUpIfChanged();
    const watch = this.#watchers.add(prefix, onEvent, () => {
      if (this.#watchers.size === 0) this.#stopPolling();
    });
    const from = options.fromRevision;
    if (from !== undefined && from < this.#seen) {
      // Only this watcher hears the replay, and nothing can commit in this process until it is delivered.
      const replay = new WatcherSet();
      replay.add(prefix, onEvent);
      replay.dispatch(this.#changesBetween(from, this.#seen, prefix));
    }
    this.#startPolling();
    return watch;
  }

  /** Closes the database; a second close does nothing. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#watchers.clear();
    this.#stopPolling();
    this.#db.close();
  }

  /** Runs inside a write transaction (BEGIN IMMEDIATE): nothing else commits meanwhile. */
  #apply(request: TxnRequest): { succeeded: boolean; revision: number; events: WatchEvent[] } {
    const s = this.#statements;
    const current = this.#revision();
    for (const compare of request.compare ?? []) {
      const holds =
        compare.prefix === true
          ? s.anyInRange.get(compare.key, compare.key + PREFIX_END) === undefined
          : ((s.modRevision.get(compare.key) as { mod_revision: number } | undefined)?.mod_revision ?? 0) ===
            compare.modRevision;
      if (!holds) return { succeeded: false, revision: current, events: [] };
    }
    const puts = request.put ?? [];
    const deletes = (request.delete ?? []).filter((key) => s.modRevision.get(key) !== undefined);
    if (puts.length === 0 && deletes.length === 0) return { succeeded: true, revision: current, events: [] };

    const revision = current + 1;
    const events: WatchEvent[] = [];
    let seq = 0;
    for (const { key, value } of puts) {
      s.put.run(key, value, revision);
      s.logChange.run(revision, seq++, key, value);
      events.push({ type: 'put', kv: Object.freeze({ key, value, modRevision: revision }) });
    }
    for (const key of deletes) {
      s.delete.run(key);
      s.logChange.run(revision, seq++, key, null);
      events.push({ type: 'delete', key, modRevision: revision });
    }
    s.setMeta.run('revision', revision);
    if (revision % PRUNE_EVERY === 0) s.pruneChanges.run(revision - CHANGE_WINDOW);
    return { succeeded: true, revision, events };
  }

  /**
   * The changes after `from` up to `to` under `prefix`, from the log, or the
   * net puts where the log no longer reaches.
   */
  #changesBetween(from: number, to: number, prefix: string): WatchEvent[] {
    const oldest = (this.#statements.oldestChange.get() as { revision: number | null }).revision;
    if (oldest !== null && oldest <= from + 1) {
      return (this.#statements.changesAfter.all(from, to) as ChangeRow[])
        .filter((row) => row.key.startsWith(prefix))
        .map(toEvent);
    }
    return (this.#statements.changedAfter.all(from, to, prefix, prefix + PREFIX_END) as KvRow[]).map(
      (row): WatchEvent => ({ type: 'put', kv: toKeyValue(row) }),
    );
  }

  #catchUpIfChanged(): void {
    if (this.#readDataVersion() !== this.#dataVersion) this.#catchUp();
  }

  /** Tells the watchers every change committed since #seen, in revision order. */
  #catchUp(): void {
    this.#dataVersion = this.#readDataVersion();
    const now = this.#revision();
    if (now < this.#seen) {
      throw new StoreCorrupt(`${this.#path}: revision went back from ${this.#seen} to ${now}; the database was replaced`);
    }
    if (now === this.#seen) return;
    const events = this.#watchers.size === 0 ? [] : this.#changesBetween(this.#seen, now, '');
    this.#seen = now;
    this.#watchers.dispatch(events);
  }

  #revision(): number {
    return (this.#statements.getMeta.get('revision') as { value: number } | undefined)?.value ?? 0;
  }

  #readDataVersion(): number {
    return this.#statements.dataVersion.get() as number;
  }

  #startPolling(): void {
    if (this.#pollTimer !== undefined) return;
    this.#pollTimer = setInterval(() => {
      try {
        this.#catchUpIfChanged();
      } catch (err) {
        // No caller to reject here; the next read or transaction reports the same trouble.
        process.emitWarning(`netctl sqlite store watch: ${(err as Error).message}`);
      }
    }, this.#pollIntervalMs);
    // Watches alone do not keep a process alive, as with the other stores.
    this.#pollTimer.unref();
  }

  #stopPolling(): void {
    if (this.#pollTimer !== undefined) clearInterval(this.#pollTimer);
    this.#pollTimer = undefined;
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreClosed();
  }
}

function prepare(db: Database.Database) {
  return {
    get: db.prepare('SELECT key, value, mod_revision FROM kv WHERE key = ?'),
    range: db.prepare('SELECT key, value, mod_revision FROM kv WHERE key >= ? AND key < ? ORDER BY key'),
    anyInRange: db.prepare('SELECT 1 FROM kv WHERE key >= ? AND key < ? LIMIT 1'),
    modRevision: db.prepare('SELECT mod_revision FROM kv WHERE key = ?'),
    put: db.prepare(
      'INSERT INTO kv (key, value, mod_revision) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision',
    ),
    delete: db.prepare('DELETE FROM kv WHERE key = ?'),
    logChange: db.prepare('INSERT INTO changes (revision, seq, key, value) VALUES (?, ?, ?, ?)'),
    pruneChanges: db.prepare('DELETE FROM changes WHERE revision <= ?'),
    oldestChange: db.prepare('SELECT min(revision) AS revision FROM changes'),
    changesAfter: db.prepare('SELECT revision, key, value FROM changes WHERE revision > ? AND revision <= ? ORDER BY revision, seq'),
    changedAfter: db.prepare(
      'SELECT key, value, mod_revision FROM kv WHERE mod_revision > ? AND mod_revision <= ? AND key >= ? AND key < ? ORDER BY mod_revision, key',
    ),
    // Asked before every read and transaction: prepared once, as db.pragma() would prepare it each time.
    dataVersion: db.prepare('PRAGMA data_version').pluck(),
    getMeta: db.prepare('SELECT value FROM meta WHERE name = ?'),
    setMeta: db.prepare('INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value'),
  };
}

/** Sets the database up (WAL, fsync per commit) and creates the tables, or refuses a schema it does not know. */
function initialise(db: Database.Database, path: string): void {
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = OFF');
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) {
    throw new StoreCorrupt(`${path}: schema version ${version} is newer than this netctl's (${SCHEMA_VERSION}); run a newer netctl`);
  }
  if (version === SCHEMA_VERSION) return;
  db.transaction(() => {
    // Another process may have created the tables between the read above and this write lock: ask again under it.
    if ((db.pragma('user_version', { simple: true }) as number) === SCHEMA_VERSION) return;
    db.exec(`
      CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, mod_revision INTEGER NOT NULL) WITHOUT ROWID;
      CREATE INDEX kv_by_revision ON kv (mod_revision);
      CREATE TABLE changes (
        revision INTEGER NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL, value TEXT,
        PRIMARY KEY (revision, seq)
      ) WITHOUT ROWID;
    `);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

/**
 * Imports the FileStore state file of `dir`, keeping every key's modRevision
 * and the store revision (so compares by a client that read before the
 * upgrade still hold), then renames the file so it is never read again. The
 * import and its marker commit together; a crash before the rename only
 * leaves the rename to do.
 */
async function migrateFileState(db: Database.Database, dir: string): Promise<void> {
  const statePath = join(dir, STATE_FILE);
  if (!existsSync(statePath)) return;
  const marker = db.prepare("SELECT value FROM meta WHERE name = 'migrated-at'").get();
  if (marker === undefined) {
    const revision = (db.prepare("SELECT value FROM meta WHERE name = 'revision'").get() as { value: number } | undefined)?.value ?? 0;
    if (revision !== 0) {
      throw new StoreCorrupt(
        `${dir} holds both ${DATABASE_FILE} with data and an older ${STATE_FILE}; move one of them away (netctl migrates ${STATE_FILE} only into an empty database)`,
      );
    }
    const state = await readStateFile(statePath);
    const put = db.prepare('INSERT INTO kv (key, value, mod_revision) VALUES (?, ?, ?)');
    const meta = db.prepare('INSERT INTO meta (name, value) VALUES (?, ?)');
    db.transaction(() => {
      for (const kv of state.entries.values()) put.run(kv.key, kv.value, kv.modRevision);
      meta.run('revision', state.revision);
      meta.run('migrated-at', state.revision);
    }).immediate();
  }
  await rename(statePath, statePath + MIGRATED_SUFFIX);
}

function toKeyValue(row: KvRow): KeyValue {
  return Object.freeze({ key: row.key, value: row.value, modRevision: row.mod_revision });
}

function toEvent(row: ChangeRow): WatchEvent {
  return row.value === null
    ? { type: 'delete', key: row.key, modRevision: row.revision }
    : { type: 'put', kv: Object.freeze({ key: row.key, value: row.value, modRevision: row.revision }) };
}

/**
 * SQLite's own errors become netctl's: a damaged or foreign file is
 * StoreCorrupt naming the file, a write lock held past the busy timeout by
 * another process is LockTimeout.
 */
function asSqliteError(err: unknown, path: string, busyTimeoutMs = DEFAULT_BUSY_TIMEOUT_MS): unknown {
  if (err instanceof StoreCorrupt || err instanceof StoreClosed) return err;
  const code = (err as { code?: unknown }).code;
  if (code === 'SQLITE_BUSY') return new LockTimeout(path, busyTimeoutMs);
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
    return new StoreCorrupt(`${path}: ${(err as Error).message}`, { cause: err });
  }
  return err;
}
