import test from 'ava';
import type { ExecutionContext } from 'ava';
import { StoreClosed } from '../../src/store/types.js';
import type { Store, WatchEvent } from '../../src/store/types.js';

export type MakeStore = () => Promise<{ store: Store; cleanup: () => Promise<void> }>;

/** Waits until `events` holds `count` items (watch delivery may be asynchronous), then a little longer to catch extras. */
export async function collect(events: WatchEvent[], count: number, timeoutMs = 5000): Promise<WatchEvent[]> {
  const deadline = Date.now() + timeoutMs;
  while (events.length < count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  await new Promise((resolve) => setTimeout(resolve, 100));
  return [...events];
}

/** The behaviour every Store must share, registered as ava tests titled `${name}: …`. */
export function storeCompliance(name: string, makeStore: MakeStore): void {
  const withStore = (title: string, body: (t: ExecutionContext, store: Store) => Promise<void>): void => {
    test(`${name}: ${title}`, async (t) => {
      const { store, cleanup } = await makeStore();
      t.teardown(cleanup);
      await body(t, store);
    });
  };

  withStore('get returns what a txn put, with its revision', async (t, store) => {
    t.is(await store.get('a'), undefined);
    const result = await store.txn({ put: [{ key: 'a', value: '{"x":1}' }] });
    t.true(result.succeeded);
    t.deepEqual({ ...(await store.get('a')) }, { key: 'a', value: '{"x":1}', modRevision: result.revision });
  });

  withStore('list returns the keys under a prefix, sorted by key', async (t, store) => {
    await store.txn({
      put: [
        { key: 'net/b', value: '2' },
        { key: 'other/a', value: '9' },
        { key: 'net/a', value: '1' },
        { key: 'net/c/x', value: '3' },
      ],
    });
    t.deepEqual(
      (await store.list('net/')).map((kv) => [kv.key, kv.value]),
      [
        ['net/a', '1'],
        ['net/b', '2'],
        ['net/c/x', '3'],
      ],
    );
    t.deepEqual((await store.list('')).map((kv) => kv.key), ['net/a', 'net/b', 'net/c/x', 'other/a']);
    t.deepEqual(await store.list('none/'), []);
  });

  withStore('txn deletes keys; deleting a missing key changes nothing', async (t, store) => {
    const put = await store.txn({ put: [{ key: 'a', value: '1' }, { key: 'b', value: '2' }] });
    const deleted = await store.txn({ delete: ['a'] });
    t.true(deleted.succeeded);
    t.is(deleted.revision, put.revision + 1);
    t.is(await store.get('a'), undefined);
    t.is((await store.get('b'))?.value, '2');

    const noop = await store.txn({ delete: ['a'] });
    t.true(noop.succeeded);
    t.is(noop.revision, deleted.revision);
  });

  withStore('revisions increase by one per txn and a txn writes all keys at one revision', async (t, store) => {
    const first = await store.txn({ put: [{ key: 'a', value: '1' }] });
    const second = await store.txn({ put: [{ key: 'b', value: '1' }, { key: 'c', value: '1' }] });
    const third = await store.txn({ put: [{ key: 'a', value: '2' }] });
    t.true(first.revision > 0);
    t.is(second.revision, first.revision + 1);
    t.is(third.revision, second.revision + 1);
    t.is((await store.get('b'))?.modRevision, second.revision);
    t.is((await store.get('c'))?.modRevision, second.revision);
    t.is((await store.get('a'))?.modRevision, third.revision);
  });

  withStore('a prefix compare holds only while no key starts with the prefix', async (t, store) => {
    const claim = { compare: [{ key: 'names/x/', modRevision: 0, prefix: true }], put: [{ key: 'claimed', value: '1' }] };
    await store.txn({ put: [{ key: 'names/xy', value: 'not under names/x/' }] });
    t.true((await store.txn(claim)).succeeded);
    await store.txn({ put: [{ key: 'names/x/host1', value: 'a' }] });
    t.false((await store.txn({ ...claim, put: [{ key: 'claimed2', value: '1' }] })).succeeded);
    t.is(await store.get('claimed2'), undefined);
    await store.txn({ delete: ['names/x/host1'] });
    t.true((await store.txn({ ...claim, put: [{ key: 'claimed2', value: '1' }] })).succeeded);
    await t.throwsAsync(store.txn({ compare: [{ key: 'names/', modRevision: 3, prefix: true }] }), { instanceOf: TypeError });
  });

  withStore('compare on modRevision 0 creates a key only once', async (t, store) => {
    const create = { compare: [{ key: 'lock', modRevision: 0 }], put: [{ key: 'lock', value: 'me' }] };
    t.true((await store.txn(create)).succeeded);
    const again = await store.txn({ ...create, put: [{ key: 'lock', value: 'you' }] });
    t.false(again.succeeded);
    t.is((await store.get('lock'))?.value, 'me');
  });

  withStore('compare on the current modRevision succeeds, on a stale one fails', async (t, store) => {
    const v1 = await store.txn({ put: [{ key: 'k', value: '1' }] });
    const v2 = await store.txn({ compare: [{ key: 'k', modRevision: v1.revision }], put: [{ key: 'k', value: '2' }] });
    t.true(v2.succeeded);
    const stale = await store.txn({ compare: [{ key: 'k', modRevision: v1.revision }], put: [{ key: 'k', value: '3' }] });
    t.false(stale.succeeded);
    t.is(stale.revision, v2.revision);
    t.is((await store.get('k'))?.value, '2');
  });

  withStore('a failed compare writes nothing, across several keys', async (t, store) => {
    const base = await store.txn({ put: [{ key: 'a', value: '1' }, { key: 'b', value: '1' }] });
    const result = await store.txn({
      compare: [
        { key: 'a', modRevision: base.revision },
        { key: 'b', modRevision: base.revision + 7 },
      ],
      put: [{ key: 'a', value: '2' }, { key: 'new', value: 'x' }],
      delete: ['b'],
    });
    t.false(result.succeeded);
    t.is(result.revision, base.revision);
    t.deepEqual(
      (await store.list('')).map((kv) => [kv.key, kv.value, kv.modRevision]),
      [
        ['a', '1', base.revision],
        ['b', '1', base.revision],
      ],
    );
    const next = await store.txn({ put: [{ key: 'c', value: '1' }] });
    t.is(next.revision, base.revision + 1);
  });

  withStore('a txn naming a key twice is refused and writes nothing', async (t, store) => {
    await t.throwsAsync(store.txn({ put: [{ key: 'a', value: '1' }], delete: ['a'] }), { instanceOf: TypeError });
    await t.throwsAsync(store.txn({ put: [{ key: 'a', value: '1' }, { key: 'a', value: '2' }] }), {
      instanceOf: TypeError,
    });
    t.deepEqual(await store.list(''), []);
  });

  withStore('watch sees later puts and deletes under its prefix, in order', async (t, store) => {
    await store.txn({ put: [{ key: 'w/before', value: '0' }] });
    const events: WatchEvent[] = [];
    const watch = await store.watch('w/', (event) => events.push(event));
    const r1 = await store.txn({ put: [{ key: 'w/a', value: '1' }, { key: 'elsewhere', value: '1' }] });
    const r2 = await store.txn({ put: [{ key: 'w/a', value: '2' }] });
    const r3 = await store.txn({ delete: ['w/a', 'w/before', 'elsewhere'] });
    t.deepEqual(await collect(events, 4), [
      { type: 'put', kv: { key: 'w/a', value: '1', modRevision: r1.revision } },
      { type: 'put', kv: { key: 'w/a', value: '2', modRevision: r2.revision } },
      { type: 'delete', key: 'w/a', modRevision: r3.revision },
      { type: 'delete', key: 'w/before', modRevision: r3.revision },
    ]);
    await watch.cancel();
    await store.txn({ put: [{ key: 'w/after', value: '1' }] });
    t.is((await collect(events, 5, 200)).length, 4);
  });

  withStore('each watch gets its own prefix and a failed txn produces no event', async (t, store) => {
    const a: WatchEvent[] = [];
    const b: WatchEvent[] = [];
    await store.watch('a/', (event) => a.push(event));
    await store.watch('b/', (event) => b.push(event));
    await store.txn({ put: [{ key: 'a/1', value: 'x' }] });
    await store.txn({ compare: [{ key: 'b/1', modRevision: 99 }], put: [{ key: 'b/1', value: 'x' }] });
    await store.txn({ put: [{ key: 'b/2', value: 'y' }] });
    t.deepEqual(
      (await collect(a, 1)).map((event) => (event.type === 'put' ? event.kv.key : event.key)),
      ['a/1'],
    );
    t.deepEqual(
      (await collect(b, 1)).map((event) => (event.type === 'put' ? event.kv.key : event.key)),
      ['b/2'],
    );
  });

  withStore('after close every call rejects with StoreClosed', async (t, store) => {
    const events: WatchEvent[] = [];
    await store.watch('', (event) => events.push(event));
    await store.close();
    await t.throwsAsync(store.get('a'), { instanceOf: StoreClosed });
    await t.throwsAsync(store.list(''), { instanceOf: StoreClosed });
    await t.throwsAsync(store.txn({ put: [{ key: 'a', value: '1' }] }), { instanceOf: StoreClosed });
    await t.throwsAsync(store.watch('', () => undefined), { instanceOf: StoreClosed });
    t.deepEqual(events, []);
  });

  withStore('a second close is harmless', async (t, store) => {
    await store.txn({ put: [{ key: 'a', value: '1' }] });
    await store.watch('', () => undefined);
    // Shutdown paths that each close what they were given may meet: together, and one after the other.
    await t.notThrowsAsync(Promise.all([store.close(), store.close()]));
    await t.notThrowsAsync(store.close());
    await t.throwsAsync(store.get('a'), { instanceOf: StoreClosed });
  });
}
