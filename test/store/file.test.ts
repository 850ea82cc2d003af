import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { FileStore } from '../../src/store/file.js';
import { StoreCorrupt } from '../../src/store/types.js';
import type { TxnRequest, WatchEvent } from '../../src/store/types.js';
import { collect, storeCompliance } from './compliance.js';
import { sharedDirectoryCompliance, txnsWhileBlocked, usingDir } from './shared-directory.js';

const open = (dir: string, options?: { pollIntervalMs?: number }) => FileStore.open(dir, options);

sharedDirectoryCompliance('FileStore', 'file', {
  open,
  async afterCrash(t, dir) {
    t.deepEqual((await readdir(dir)).filter((name) => name.includes('.tmp-')), [], 'open removes temp files left by the crash');
  },
});

storeCompliance('FileStore', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'netctl-store-'));
  const store = await FileStore.open(dir);
  return {
    store,
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
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

test('FileStore: a watcher further behind than the file keeps history gets the net changes', async (t) => {
  const dir = await usingDir(t);
  const store = await FileStore.open(dir);
  t.teardown(() => store.close());
  await store.txn({ put: [{ key: 'gone', value: 'x' }, { key: 'same', value: 'x' }] });
  const events: WatchEvent[] = [];
  await store.watch('', (event) => events.push(event));
  const requests: TxnRequest[] = Array.from({ length: 200 }, (_, i) => ({ put: [{ key: 'k', value: String(i) }] }));
  requests.push({ delete: ['gone'], put: [{ key: 'new', value: 'y' }] });
  const results = txnsWhileBlocked('file', dir, requests);
  const last = results.at(-1)?.revision ?? 0;
  t.deepEqual(await collect(events, 3), [
    { type: 'put', kv: { key: 'k', value: '199', modRevision: last - 1 } },
    { type: 'put', kv: { key: 'new', value: 'y', modRevision: last } },
    { type: 'delete', key: 'gone', modRevision: last },
  ]);
});
