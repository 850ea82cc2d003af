/**
 * What a store kept in a directory must do when several instances and
 * processes share that directory, and when a writer is killed: registered
 * as ava tests titled `${name}: …` for the file and the SQLite store. The
 * helper processes open the store NETCTL_TEST_STORE names.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import type { ExecutionContext } from 'ava';
import type { Store, TxnRequest, TxnResult, WatchEvent } from '../../src/store/types.js';
import { collect } from './compliance.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const helper = (name: string): string => fileURLToPath(new URL(`./helpers/${name}`, import.meta.url));

export type StoreKind = 'file' | 'sqlite';

export interface DirectoryStore {
  /** Opens the store of the directory; `pollIntervalMs` sets how often watchers look for other processes' changes. */
  open(dir: string, options?: { pollIntervalMs?: number }): Promise<Store>;
  /** More checks of the directory after a writer was killed (temp files gone, database intact…). */
  afterCrash?(t: ExecutionContext, dir: string): Promise<void>;
}

export async function usingDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'netctl-store-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Starts a helper script under tsx; the test kills it on teardown if it still runs. */
function startHelper(t: ExecutionContext, kind: StoreKind, name: string, args: string[]): ChildProcess {
  const child = spawn(process.execPath, ['--import=tsx', helper(name), ...args], {
    cwd: root,
    env: { ...process.env, NETCTL_TEST_STORE: kind },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

export async function runHelper(t: ExecutionContext, kind: StoreKind, name: string, args: string[]): Promise<string> {
  const child = startHelper(t, kind, name, args);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`${name} exited with ${code}: ${stderr}`);
  return stdout;
}

/**
 * Runs txns in a child process while this process's event loop stands still,
 * so watchers here notice all of them at once, as a busy or slow process would.
 */
export function txnsWhileBlocked(kind: StoreKind, dir: string, requests: TxnRequest[]): TxnResult[] {
  const child = spawnSync(process.execPath, ['--import=tsx', helper('txn.ts'), dir, ...requests.map((r) => JSON.stringify(r))], {
    cwd: root,
    env: { ...process.env, NETCTL_TEST_STORE: kind },
    encoding: 'utf8',
  });
  if (child.status !== 0) throw new Error(`txn.ts failed: ${child.stderr}`);
  return child.stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as TxnResult);
}

export function sharedDirectoryCompliance(name: string, kind: StoreKind, kindOf: DirectoryStore): void {
  const opened = async (t: ExecutionContext, dir: string, options?: { pollIntervalMs?: number }): Promise<Store> => {
    const store = await kindOf.open(dir, options);
    t.teardown(() => store.close());
    return store;
  };

  test(`${name}: state and revision survive a reopen`, async (t) => {
    const dir = await usingDir(t);
    const first = await kindOf.open(dir);
    await first.txn({ put: [{ key: 'a', value: '1' }] });
    const last = await first.txn({ put: [{ key: 'b', value: '2' }] });
    await first.txn({ delete: ['a'] });
    await first.close();

    const second = await opened(t, dir);
    t.is(await second.get('a'), undefined);
    t.deepEqual({ ...(await second.get('b')) }, { key: 'b', value: '2', modRevision: last.revision });
    t.is((await second.txn({ put: [{ key: 'c', value: '3' }] })).revision, last.revision + 2);
  });

  test(`${name}: two instances on one directory see each other and their compares conflict`, async (t) => {
    const dir = await usingDir(t);
    const a = await opened(t, dir);
    const b = await opened(t, dir);
    const created = await a.txn({ compare: [{ key: 'k', modRevision: 0 }], put: [{ key: 'k', value: 'a' }] });
    t.true(created.succeeded);
    t.is((await b.get('k'))?.value, 'a');
    t.false((await b.txn({ compare: [{ key: 'k', modRevision: 0 }], put: [{ key: 'k', value: 'b' }] })).succeeded);
    const updated = await b.txn({ compare: [{ key: 'k', modRevision: created.revision }], put: [{ key: 'k', value: 'b' }] });
    t.true(updated.succeeded);
    t.is(updated.revision, created.revision + 1);
    t.is((await a.get('k'))?.value, 'b');
  });

  test(`${name}: concurrent processes incrementing one counter lose no update`, async (t) => {
    const dir = await usingDir(t);
    const processes = 4;
    const increments = 40;
    const retries = await Promise.all(
      Array.from({ length: processes }, () => runHelper(t, kind, 'increment.ts', [dir, 'counter', String(increments)])),
    );
    const counter = await (await opened(t, dir)).get('counter');
    t.is(counter?.value, String(processes * increments));
    t.is(counter?.modRevision, processes * increments);
    t.log(`compare-and-swap retries per process: ${retries.map((r) => r.trim()).join(', ')}`);
  });

  test(`${name}: kill -9 at random moments never loses an acknowledged write or damages the store`, async (t) => {
    const dir = await usingDir(t);
    let previous = 0;
    for (let round = 0; round < 20; round++) {
      const child = startHelper(t, kind, 'crash-writer.ts', [dir]);
      let output = '';
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
      // Kill only once the child is writing, at a random point of its write loop.
      await new Promise<void>((resolve, reject) => {
        child.stdout?.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          resolve();
        });
        child.on('exit', () => reject(new Error(`writer exited by itself: ${stderr}`)));
      });
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 40));
      child.kill('SIGKILL');
      await exited;

      const acknowledged = output
        .split('\n')
        .filter((line) => line !== '')
        .map(Number);
      const lastAcknowledged = acknowledged.at(-1) ?? 0;
      t.is(acknowledged[0], previous + 1, `round ${round} continues from the last stored value`);
      const store = await kindOf.open(dir);
      const counter = Number((await store.get('counter'))?.value);
      await store.close();
      // The child may have committed one more value than it managed to print.
      t.true(counter === lastAcknowledged || counter === lastAcknowledged + 1, `round ${round}: stored ${counter}, last acknowledged ${lastAcknowledged}`);
      await kindOf.afterCrash?.(t, dir);
      previous = counter;
    }
  });

  test(`${name}: watch sees puts and deletes made by another process, once each`, async (t) => {
    const dir = await usingDir(t);
    const store = await opened(t, dir, { pollIntervalMs: 100 });
    const events: WatchEvent[] = [];
    await store.watch('net/', (event) => events.push(event));
    const put = JSON.parse(
      await runHelper(t, kind, 'txn.ts', [dir, JSON.stringify({ put: [{ key: 'net/a', value: 'x' }, { key: 'other', value: 'y' }] })]),
    ) as TxnResult;
    const deleted = JSON.parse(await runHelper(t, kind, 'txn.ts', [dir, JSON.stringify({ delete: ['net/a'] })])) as TxnResult;
    t.deepEqual(await collect(events, 2), [
      { type: 'put', kv: { key: 'net/a', value: 'x', modRevision: put.revision } },
      { type: 'delete', key: 'net/a', modRevision: deleted.revision },
    ]);
    // Several polls later (and after any change notification) nothing is delivered twice.
    await new Promise((resolve) => setTimeout(resolve, 500));
    t.is(events.length, 2);
  });

  test(`${name}: a watcher that notices several changes at once gets every revision in order`, async (t) => {
    const dir = await usingDir(t);
    const store = await opened(t, dir, { pollIntervalMs: 100 });
    const events: WatchEvent[] = [];
    await store.watch('', (event) => events.push(event));
    const revisions = txnsWhileBlocked(kind, dir, [
      { put: [{ key: 'k', value: '1' }] },
      { put: [{ key: 'k', value: '2' }] },
      { delete: ['k'] },
      { put: [{ key: 'k', value: '3' }] },
    ]).map((result) => result.revision);
    t.deepEqual(await collect(events, 4), [
      { type: 'put', kv: { key: 'k', value: '1', modRevision: revisions[0] } },
      { type: 'put', kv: { key: 'k', value: '2', modRevision: revisions[1] } },
      { type: 'delete', key: 'k', modRevision: revisions[2] },
      { type: 'put', kv: { key: 'k', value: '3', modRevision: revisions[3] } },
    ]);
  });

  test(`${name}: changes by another process come before this instance's own in its watch`, async (t) => {
    const dir = await usingDir(t);
    const local = await opened(t, dir, { pollIntervalMs: 60_000 });
    const events: WatchEvent[] = [];
    await local.watch('', (event) => events.push(event));
    const remote = JSON.parse(await runHelper(t, kind, 'txn.ts', [dir, JSON.stringify({ put: [{ key: 'r', value: '1' }] })])) as TxnResult;
    const own = await local.txn({ put: [{ key: 'l', value: '1' }] });
    t.is(own.revision, remote.revision + 1);
    t.deepEqual(
      (await collect(events, 2)).map((event) => (event.type === 'put' ? [event.kv.key, event.kv.modRevision] : [])),
      [
        ['r', remote.revision],
        ['l', own.revision],
      ],
    );
  });
}
