import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { FileStore } from '../../src/store/file.js';
import { StoreCorrupt } from '../../src/store/types.js';
import type { TxnRequest, TxnResult, WatchEvent } from '../../src/store/types.js';
import { collect, storeCompliance } from './compliance.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const helper = (name: string): string => fileURLToPath(new URL(`./helpers/${name}`, import.meta.url));

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'netctl-store-'));
}

async function usingDir(t: ExecutionContext): Promise<string> {
  const dir = await tempDir();
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Starts a helper script under tsx; the test kills it on teardown if it still runs. */
function startHelper(t: ExecutionContext, name: string, args: string[]): ChildProcess {
  const child = spawn(process.execPath, ['--import=tsx', helper(name), ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

async function runHelper(t: ExecutionContext, name: string, args: string[]): Promise<string> {
  const child = startHelper(t, name, args);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`${name} exited with ${code}: ${stderr}`);
  return stdout;
}

storeCompliance('FileStore', async () => {
  const dir = await tempDir();
  const store = await FileStore.open(dir);
  return {
    store,
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

test('FileStore: state and revision survive a reopen', async (t) => {
  const dir = await usingDir(t);
  const first = await FileStore.open(dir);
  await first.txn({ put: [{ key: 'a', value: '1' }] });
  const last = await first.txn({ put: [{ key: 'b', value: '2' }] });
  await first.txn({ delete: ['a'] });
  await first.close();

  const second = await FileStore.open(dir);
  t.teardown(() => second.close());
  t.is(await second.get('a'), undefined);
  t.deepEqual({ ...(await second.get('b')) }, { key: 'b', value: '2', modRevision: last.revision });
  const next = await second.txn({ put: [{ key: 'c', value: '3' }] });
  t.is(next.revision, last.revision + 2);
});

test('FileStore: two instances on one directory see each other and their compares conflict', async (t) => {
  const dir = await usingDir(t);
  const a = await FileStore.open(dir);
  const b = await FileStore.open(dir);
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const created = await a.txn({ compare: [{ key: 'k', modRevision: 0 }], put: [{ key: 'k', value: 'a' }] });
  t.true(created.succeeded);
  t.is((await b.get('k'))?.value, 'a');
  t.false((await b.txn({ compare: [{ key: 'k', modRevision: 0 }], put: [{ key: 'k', value: 'b' }] })).succeeded);
  const updated = await b.txn({ compare: [{ key: 'k', modRevision: created.revision }], put: [{ key: 'k', value: 'b' }] });
  t.true(updated.succeeded);
  t.is(updated.revision, created.revision + 1);
  t.is((await a.get('k'))?.value, 'b');
});

test('FileStore: concurrent processes incrementing one counter lose no update', async (t) => {
  const dir = await usingDir(t);
  const processes = 4;
  const increments = 40;
  const retries = await Promise.all(
    Array.from({ length: processes }, () => runHelper(t, 'increment.ts', [dir, 'counter', String(increments)])),
  );
  const store = await FileStore.open(dir);
  t.teardown(() => store.close());
  const counter = await store.get('counter');
  t.is(counter?.value, String(processes * increments));
  t.is(counter?.modRevision, processes * increments);
  t.log(`compare-and-swap retries per process: ${retries.map((r) => r.trim()).join(', ')}`);
});

test('FileStore: kill -9 at random moments never loses an acknowledged write or corrupts the file', async (t) => {
  const dir = await usingDir(t);
  const rounds = 20;
  let previous = 0;
  for (let round = 0; round < rounds; round++) {
    const child = startHelper(t, 'crash-writer.ts', [dir]);
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
    t.true(acknowledged.length > 0);
    t.is(acknowledged[0], previous + 1, `round ${round} continues from the last stored value`);

    const store = await FileStore.open(dir);
    const counter = Number((await store.get('counter'))?.value);
    await store.close();
    // The child may have committed one more value than it managed to print.
    t.true(
      counter === lastAcknowledged || counter === lastAcknowledged + 1,
      `round ${round}: stored ${counter}, last acknowledged ${lastAcknowledged}`,
    );
    t.deepEqual(
      (await readdir(dir)).filter((name) => name.includes('.tmp-')),
      [],
      'open removes temp files left by the crash',
    );
    previous = counter;
  }
});

test('FileStore: open removes stale temp files', async (t) => {
  const dir = await usingDir(t);
  await writeFile(join(dir, 'store.json.tmp-12345-abcdef'), '{"revision":1,"ent');
  const store = await FileStore.open(dir);
  t.teardown(() => store.close());
  t.deepEqual(await readdir(dir), ['store.lock']);
  t.deepEqual(await store.list(''), []);
});

for (const [title, content] of [
  ['a truncated state file', '{"revision":3,"entries":[{"key":"a","val'],
  ['an empty state file', ''],
  ['a state file that is not an object', '[1,2,3]'],
  ['a state file with an entry from a future revision', '{"revision":1,"entries":[{"key":"a","value":"1","modRevision":5}],"log":[]}'],
] as const) {
  test(`FileStore: ${title} is reported as StoreCorrupt naming the file`, async (t) => {
    const dir = await usingDir(t);
    const file = join(dir, 'store.json');
    await writeFile(file, content);
    const err = await t.throwsAsync(FileStore.open(dir), { instanceOf: StoreCorrupt });
    t.true(err?.message.includes(file));
    t.is(await readFile(file, 'utf8'), content, 'the corrupt file is left for the operator');
  });
}

test('FileStore: a file corrupted while open fails the next transaction with StoreCorrupt', async (t) => {
  const dir = await usingDir(t);
  const store = await FileStore.open(dir);
  t.teardown(() => store.close());
  await store.txn({ put: [{ key: 'a', value: '1' }] });
  await writeFile(join(dir, 'store.json'), '{"revision":7,"entries":[');
  await t.throwsAsync(store.txn({ put: [{ key: 'a', value: '2' }] }), { instanceOf: StoreCorrupt });
  await t.throwsAsync(store.get('a'), { instanceOf: StoreCorrupt });
});

test('FileStore: watch sees puts and deletes made by another process, once each', async (t) => {
  const dir = await usingDir(t);
  const store = await FileStore.open(dir);
  t.teardown(() => store.close());
  const events: WatchEvent[] = [];
  await store.watch('net/', (event) => events.push(event));

  const put = JSON.parse(
    await runHelper(t, 'txn.ts', [dir, JSON.stringify({ put: [{ key: 'net/a', value: 'x' }, { key: 'other', value: 'y' }] })]),
  ) as TxnResult;
  const deleted = JSON.parse(await runHelper(t, 'txn.ts', [dir, JSON.stringify({ delete: ['net/a'] })])) as TxnResult;

  t.deepEqual(await collect(events, 2), [
    { type: 'put', kv: { key: 'net/a', value: 'x', modRevision: put.revision } },
    { type: 'delete', key: 'net/a', modRevision: deleted.revision },
  ]);
  // Past the poll interval: a poll after fs.watch already reported the change delivers nothing again.
  await new Promise((resolve) => setTimeout(resolve, 1200));
  t.is(events.length, 2);
});

/**
 * Runs txns in a child process while this process's event loop stands still,
 * so watchers here notice all of them at once, as a busy or slow process would.
 */
function txnsWhileBlocked(dir: string, requests: TxnRequest[]): TxnResult[] {
  const child = spawnSync(process.execPath, ['--import=tsx', helper('txn.ts'), dir, ...requests.map((r) => JSON.stringify(r))], {
    cwd: root,
    encoding: 'utf8',
  });
  if (child.status !== 0) throw new Error(`txn.ts failed: ${child.stderr}`);
  return child.stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as TxnResult);
}

test('FileStore: a watcher that notices several changes at once gets every revision in order', async (t) => {
  const dir = await usingDir(t);
  const store = await FileStore.open(dir);
  t.teardown(() => store.close());
  const events: WatchEvent[] = [];
  await store.watch('', (event) => events.push(event));
  const revisions = txnsWhileBlocked(dir, [
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

test('FileStore: a watcher further behind than the file keeps history gets the net changes', async (t) => {
  const dir = await usingDir(t);
  const store = await FileStore.open(dir);
  t.teardown(() => store.close());
  await store.txn({ put: [{ key: 'gone', value: 'x' }, { key: 'same', value: 'x' }] });
  const events: WatchEvent[] = [];
  await store.watch('', (event) => events.push(event));
  const requests: TxnRequest[] = Array.from({ length: 200 }, (_, i) => ({ put: [{ key: 'k', value: String(i) }] }));
  requests.push({ delete: ['gone'], put: [{ key: 'new', value: 'y' }] });
  const results = txnsWhileBlocked(dir, requests);
  const last = results.at(-1)?.revision ?? 0;
  t.deepEqual(await collect(events, 3), [
    { type: 'put', kv: { key: 'k', value: '199', modRevision: last - 1 } },
    { type: 'put', kv: { key: 'new', value: 'y', modRevision: last } },
    { type: 'delete', key: 'gone', modRevision: last },
  ]);
});

test('FileStore: changes by another process come before this instance\'s own in its watch', async (t) => {
  const dir = await usingDir(t);
  const local = await FileStore.open(dir, { pollIntervalMs: 60_000 });
  t.teardown(() => local.close());
  const events: WatchEvent[] = [];
  await local.watch('', (event) => events.push(event));
  const remote = JSON.parse(await runHelper(t, 'txn.ts', [dir, JSON.stringify({ put: [{ key: 'r', value: '1' }] })])) as TxnResult;
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
