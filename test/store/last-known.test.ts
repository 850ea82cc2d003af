import test from 'ava';
import { Unavailable } from '../../src/errors.js';
import { LastKnownStore } from '../../src/store/last-known.js';
import { MemoryStore } from '../../src/store/memory.js';
import { CuttableStore } from '../helpers/cuttable-store.js';
import { storeCompliance } from './compliance.js';

// While the store answers, the memory in front of it must keep every promise of the Store contract.
storeCompliance('LastKnownStore', async () => {
  const store = await LastKnownStore.open(new MemoryStore(), { prefixes: ['net/'] });
  return { store, cleanup: () => store.close() };
});

test('while the store is out of reach, remembered prefixes answer from memory; writes and other reads still ask the store', async (t) => {
  const cluster = new CuttableStore();
  await cluster.inner.txn({ put: [{ key: 'networks/a', value: 'A' }, { key: 'overlay/vni/4096', value: 'a' }] });
  const store = await LastKnownStore.open(cluster, { prefixes: ['networks/'], probeIntervalMs: 10 });
  t.teardown(() => store.close());
  await store.txn({ put: [{ key: 'networks/b', value: 'B' }] });
  t.deepEqual(store.status(), { reachable: true });

  cluster.down = true;
  // The first call meets the outage and still answers from memory.
  t.deepEqual((await store.list('networks/')).map((kv) => kv.value), ['A', 'B']);
  t.false(store.status().reachable);
  t.regex(store.status().lastReached ?? '', /^\d{4}-\d\d-\d\dT/);
  const before = cluster.calls;
  t.is((await store.get('networks/b'))?.value, 'B');
  t.true(cluster.calls - before <= 1, 'known out of reach, remembered reads do not go to the store (only the background probe may)');
  await t.throwsAsync(store.txn({ put: [{ key: 'networks/c', value: 'C' }] }), { instanceOf: Unavailable, message: /cannot reach etcd/ });
  await t.throwsAsync(store.list('overlay/vni/'), { instanceOf: Unavailable });
});

test('the store is probed until it answers; then calls go to it again and onReachable runs', async (t) => {
  const cluster = new CuttableStore();
  const store = await LastKnownStore.open(cluster, { prefixes: ['networks/'], probeIntervalMs: 10 });
  t.teardown(() => store.close());
  let back = 0;
  store.onReachable(() => back++);
  cluster.down = true;
  await t.throwsAsync(store.txn({ put: [{ key: 'networks/x', value: '1' }] }), { instanceOf: Unavailable });
  cluster.down = false;
  // Changes made by others meanwhile reach the memory through the watch.
  await cluster.inner.txn({ put: [{ key: 'networks/y', value: '2' }] });
  for (let i = 0; i < 500 && back === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  t.is(back, 1);
  t.deepEqual(store.status(), { reachable: true });
  t.true((await store.txn({ put: [{ key: 'networks/x', value: '1' }] })).succeeded);
  cluster.down = true;
  t.deepEqual((await store.list('networks/')).map((kv) => kv.key), ['networks/x', 'networks/y']);
});
