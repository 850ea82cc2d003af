import { randomBytes } from 'node:crypto';
import { watch as watchDir } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { lockFile } from '../sys/fslock.js';
import { applyTxn, emptySnapshot, listPrefix, WatcherSet } from './memory.js';
import type { Snapshot } from './memory.js';
import { StoreClosed, StoreCorrupt } from './types.js';
import type { KeyValue, Store, TxnRequest, TxnResult, Watch, WatchEvent } from './types.js';

export const STATE_FILE = 'store.json';
const LOCK_FILE = 'store.lock';
const TEMP_PREFIX = `${STATE_FILE}.tmp-`;
/**
 * The state file keeps the changes of this many recent revisions so that
 * another process's watchers replay them exactly; a watcher that falls
 * further behind gets the difference between two states instead.
 */
const LOG_REVISIONS = 128;
const DEFAULT_POLL_INTERVAL_MS = 1000;
const DEFAULT_LOCK_TIMEOUT_MS = 10_000;
/** Writers put the revision first, so a reader learns it from these bytes. */
const HEAD_BYTES = 40;
const HEAD_PATTERN = /^\{"revision":(\d+),/;

interface LogRecord {
  readonly revision: number;
  readonly events: readonly WatchEvent[];
}

interface FileSnapshot extends Snapshot {
  /** The changes of the last revisions, oldest first, one record per revision. */
  readonly log: readonly LogRecord[];
}

const emptyFileSnapshot: FileSnapshot = { ...emptySnapshot, log: [] };

export interface FileStoreOptions {
  /** How long a transaction waits for another process's lock; default 10 000 ms. */
  readonly lockTimeoutMs?: number;
  /** How often watchers look at the file when no change notification came; default 1000 ms. */
  readonly pollIntervalMs?: number;
}

/**
 * The embedded store: one JSON state file in a directory, shared by every
 * process that opens the directory.
 * - A transaction takes an exclusive flock on `store.lock`, reloads the state
 *   if another process changed it, applies the compares and writes a new
 *   state file atomically (temp file, fsync, rename, fsync of the directory),
 *   so a crash at any moment leaves the old or the new state.
 * - Reads take no lock: the rename makes each state file complete.
 * - Watchers get this instance's changes as they commit and other processes'
 *   changes when the file changes (fs.watch plus a poll).
 * - There are no client sessions: `ephemeral` puts stay until deleted. The
 *   log is too short to replay from any revision, so `watch` ignores
 *   `fromRevision` and starts at the current state.
 */
export class FileStore implements Store {
  readonly #dir: string;
  readonly #statePath: string;
  readonly #lockPath: string;
  readonly #lockTimeoutMs: number;
  readonly #pollIntervalMs: number;
  #snapshot: FileSnapshot = emptyFileSnapshot;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Serialises this instance's transactions so they queue here instead of polling the lock. */
  #txnTail: Promise<unknown> = Promise.resolve();
  readonly #watchers = new WatcherSet();
  #dirWatcher: FSWatcher | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #refreshing = false;
  #refreshAgain = false;
  #lastWarning: string | undefined;

  private constructor(dir: string, options: FileStoreOptions) {
    this.#dir = dir;
    this.#statePath = join(dir, STATE_FILE);
    this.#lockPath = join(dir, LOCK_FILE);
    this.#lockTimeoutMs = options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
    this.#pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  }

  /**
   * Opens the store in `dir` (created if missing). Rejects with StoreCorrupt
   * when the state file exists but cannot be read back.
   */
  static async open(dir: string, options: FileStoreOptions = {}): Promise<FileStore> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const store = new FileStore(dir, options);
    const lock = await lockFile(store.#lockPath, { timeoutMs: store.#lockTimeoutMs });
    try {
      // Writers hold the lock while their temp file exists, so any temp file seen now is a crash's leftover.
      for (const name of await readdir(dir)) {
        if (name.startsWith(TEMP_PREFIX)) await rm(join(dir, name), { force: true });
      }
      const state = await store.#readState(true);
      if (state !== undefined) store.#snapshot = state;
    } finally {
      await lock.release();
    }
    return store;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.#assertOpen();
    await this.#refresh();
    return this.#snapshot.entries.get(key);
  }

  async list(prefix: string): Promise<KeyValue[]> {
    this.#assertOpen();
    await this.#refresh();
    return listPrefix(this.#snapshot, prefix);
  }

  async txn(request: TxnRequest): Promise<TxnResult> {
    this.#assertOpen();
    const result = this.#txnTail.then(() => this.#lockedTxn(request));
    this.#txnTail = result.catch(() => undefined);
    return result;
  }

  async watch(prefix: string, onEvent: (event: WatchEvent) => void): Promise<Watch> {
    this.#assertOpen();
    // Catch up first, so the watcher starts after every change already on disk.
    await this.#refresh();
    this.#assertOpen();
    const watch = this.#watchers.add(prefix, onEvent, () => {
      if (this.#watchers.size === 0) this.#stopNoticing();
    });
    this.#startNoticing();
    return watch;
  }

  close(): Promise<void> {
    // A second close waits for the first rather than returning before the queued transactions are done.
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#watchers.clear();
    this.#stopNoticing();
    // A transaction already queued finishes and lets go of the lock before close resolves.
    await this.#txnTail;
  }

  async #lockedTxn(request: TxnRequest): Promise<TxnResult> {
    const lock = await lockFile(this.#lockPath, { timeoutMs: this.#lockTimeoutMs });
    try {
      const current = await this.#readState(false);
      if (current !== undefined) {
        if (current.revision < this.#snapshot.revision) {
          throw new StoreCorrupt(
            `${this.#statePath}: revision went back from ${this.#snapshot.revision} to ${current.revision}; the file was replaced or removed`,
          );
        }
        this.#advance(current);
      }
      const before = this.#snapshot;
      const outcome = applyTxn(before, request);
      if (outcome.snapshot !== before) {
        const log = [...before.log, { revision: outcome.snapshot.revision, events: outcome.events }];
        const next: FileSnapshot = { ...outcome.snapshot, log: log.slice(-LOG_REVISIONS) };
        await this.#write(next);
      }
      return { succeeded: outcome.succeeded, revision: outcome.snapshot.revision };
    } finally {
      await lock.release();
    }
  }

  /** Replaces the state file atomically; the caller holds the lock. */
  async #write(next: FileSnapshot): Promise<void> {
    const tempPath = join(this.#dir, `${TEMP_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
    const handle = await open(tempPath, 'wx', 0o600);
    try {
      await handle.writeFile(serialize(next));
      await handle.sync();
      await handle.close();
      await rename(tempPath, this.#statePath);
    } catch (err) {
      await handle.close().catch(() => undefined);
      await rm(tempPath, { force: true });
      throw err;
    }
    // The new state is visible to other processes from the rename on, so this instance follows it now.
    this.#advance(next);
    const dirHandle = await open(this.#dir, 'r');
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
  }

  /**
   * Reads the state file; undefined when its revision is the one already
   * held (unless `full`). A missing file is the empty state.
   */
  async #readState(full: boolean): Promise<FileSnapshot | undefined> {
    let handle;
    try {
      handle = await open(this.#statePath, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return !full && this.#snapshot.revision === 0 ? undefined : emptyFileSnapshot;
      }
      throw err;
    }
    try {
      if (!full) {
        const head = Buffer.alloc(HEAD_BYTES);
        // A positioned read leaves the file offset at 0 for readFile below.
        const { bytesRead } = await handle.read(head, 0, HEAD_BYTES, 0);
        const match = HEAD_PATTERN.exec(head.toString('latin1', 0, bytesRead));
        if (match !== null && Number(match[1]) === this.#snapshot.revision) return undefined;
      }
      return parseState(await handle.readFile('utf8'), this.#statePath);
    } finally {
      await handle.close();
    }
  }

  /** Moves to a newer state and tells the watchers what changed in between. */
  #advance(next: FileSnapshot): void {
    const previous = this.#snapshot;
    if (next.revision <= previous.revision) return;
    this.#snapshot = next;
    this.#watchers.dispatch(changesBetween(previous, next));
  }

  async #refresh(): Promise<void> {
    const state = await this.#readState(false);
    if (state !== undefined) this.#advance(state);
  }

  #startNoticing(): void {
    if (this.#pollTimer !== undefined) return;
    this.#pollTimer = setInterval(() => this.#scheduleRefresh(), this.#pollIntervalMs);
    try {
      this.#dirWatcher = watchDir(this.#dir, (_event, name) => {
        if (name === null || name === STATE_FILE) this.#scheduleRefresh();
      });
      this.#dirWatcher.on('error', () => this.#closeDirWatcher());
    } catch {
      // Some file systems offer no change notification; the poll covers them.
      this.#dirWatcher = undefined;
    }
  }

  #stopNoticing(): void {
    if (this.#pollTimer !== undefined) clearInterval(this.#pollTimer);
    this.#pollTimer = undefined;
    this.#closeDirWatcher();
  }

  #closeDirWatcher(): void {
    this.#dirWatcher?.close();
    this.#dirWatcher = undefined;
  }

  #scheduleRefresh(): void {
    if (this.#refreshing) {
      this.#refreshAgain = true;
      return;
    }
    this.#refreshing = true;
    void (async () => {
      do {
        this.#refreshAgain = false;
        try {
          await this.#refresh();
          this.#lastWarning = undefined;
        } catch (err) {
          // No caller to reject here; warn once per distinct problem and keep polling.
          const message = err instanceof Error ? err.message : String(err);
          if (message !== this.#lastWarning) process.emitWarning(`netctl file store watch: ${message}`);
          this.#lastWarning = message;
        }
      } while (this.#refreshAgain && !this.#closed);
      this.#refreshing = false;
    })();
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreClosed();
  }
}

/** Reads a FileStore state file without opening the store (the SQLite store migrates from it). */
export async function readStateFile(path: string): Promise<Snapshot> {
  return parseState(await readFile(path, 'utf8'), path);
}

/** The changes from `previous` to `next`, replayed from the log when it reaches back far enough. */
function changesBetween(previous: FileSnapshot, next: FileSnapshot): WatchEvent[] {
  const oldest = next.log[0];
  if (oldest !== undefined && oldest.revision <= previous.revision + 1) {
    return next.log.filter((record) => record.revision > previous.revision).flatMap((record) => record.events);
  }
  const puts = [...next.entries.values()]
    .filter((kv) => kv.modRevision > previous.revision)
    .sort((a, b) => a.modRevision - b.modRevision);
  const events: WatchEvent[] = puts.map((kv) => ({ type: 'put', kv }));
  for (const key of previous.entries.keys()) {
    // When each delete happened is lost with the log; the newest revision is the latest it can be.
    if (!next.entries.has(key)) events.push({ type: 'delete', key, modRevision: next.revision });
  }
  return events;
}

type PersistedEvent = { type: 'put'; key: string; value: string } | { type: 'delete'; key: string };

function serialize(state: FileSnapshot): string {
  const entries = [...state.entries.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const log = state.log.map((record) => ({
    revision: record.revision,
    events: record.events.map(
      (event): PersistedEvent =>
        event.type === 'put'
          ? { type: 'put', key: event.kv.key, value: event.kv.value }
          : { type: 'delete', key: event.key },
    ),
  }));
  // `revision` must stay the first property: readers check HEAD_PATTERN before parsing the rest.
  return `${JSON.stringify({ revision: state.revision, entries, log })}\n`;
}

function parseState(text: string, path: string): FileSnapshot {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new StoreCorrupt(`${path}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  const corrupt = (what: string): StoreCorrupt => new StoreCorrupt(`${path}: ${what}`);
  if (!isRecord(raw)) throw corrupt('not a JSON object');
  const revision = raw['revision'];
  if (!isRevision(revision)) throw corrupt('"revision" is not a non-negative integer');
  if (!Array.isArray(raw['entries'])) throw corrupt('"entries" is not an array');
  if (!Array.isArray(raw['log'])) throw corrupt('"log" is not an array');

  const entries = new Map<string, KeyValue>();
  for (const entry of raw['entries'] as unknown[]) {
    if (
      !isRecord(entry) ||
      typeof entry['key'] !== 'string' ||
      typeof entry['value'] !== 'string' ||
      !isRevision(entry['modRevision']) ||
      entry['modRevision'] < 1 ||
      entry['modRevision'] > revision
    ) {
      throw corrupt(`malformed entry ${JSON.stringify(entry)}`);
    }
    if (entries.has(entry['key'])) throw corrupt(`key ${JSON.stringify(entry['key'])} appears twice`);
    entries.set(
      entry['key'],
      Object.freeze({ key: entry['key'], value: entry['value'], modRevision: entry['modRevision'] }),
    );
  }

  const log: LogRecord[] = [];
  let expected: number | undefined;
  for (const record of raw['log'] as unknown[]) {
    if (!isRecord(record) || !isRevision(record['revision']) || !Array.isArray(record['events'])) {
      throw corrupt('malformed log record');
    }
    const recordRevision = record['revision'];
    if ((expected !== undefined && recordRevision !== expected) || recordRevision > revision) {
      throw corrupt(`log record for revision ${recordRevision} is out of sequence`);
    }
    expected = recordRevision + 1;
    const events = (record['events'] as unknown[]).map((event): WatchEvent => {
      if (isRecord(event) && typeof event['key'] === 'string') {
        if (event['type'] === 'put' && typeof event['value'] === 'string') {
          return { type: 'put', kv: Object.freeze({ key: event['key'], value: event['value'], modRevision: recordRevision }) };
        }
        if (event['type'] === 'delete') return { type: 'delete', key: event['key'], modRevision: recordRevision };
      }
      throw corrupt(`malformed event in log record ${recordRevision}`);
    });
    log.push({ revision: recordRevision, events });
  }
  if (expected !== undefined && expected !== revision + 1) throw corrupt('log does not end at the current revision');
  return { revision, entries, log };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isRevision(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}
