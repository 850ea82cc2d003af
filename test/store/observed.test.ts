import test from 'ava';
import { MemoryStore } from '../../src/store/memory.js';
import { ObservedStore, type StoreOperation } from '../../src/store/observed.js';
import { StoreClosed } from '../../src/store/types.js';
import { storeCompliance } from './compliance.js';

// The wrapper must keep every promise of the Store contract.
storeCompliance('ObservedStore', async () => {
  const store = new ObservedStore(new MemoryStore(), () => undefined);
  return {
    store,
    cleanup: () => store.close(),
  };
});

test('every operation is reported once with its duration; failures with their error, which still reaches the caller', async (t) => {
  const seen: { operation: StoreOperation; seconds: number; error?: unknown }[] = [];
  const store = new ObservedStore(new MemoryStore(), (operation, seconds, error) => seen.push({ operation, seconds, ...(error !== undefined ? { error } : {}) }));
  await store.txn({ put: [{ key: 'a', value: '1' }] });
  t.is((await store.get('a'))?.value, '1');
  t.is((await store.list('')).length, 1);
  const watch = await store.watch('', () => undefined);
  await watch.cancel();
  t.deepEqual(
    seen.map((s) => s.operation),
    ['txn', 'get', 'list', 'watch'],
  );
  t.true(seen.every((s) => s.seconds >= 0 && s.seconds < 60 && s.error === undefined));

  await store.close();
  await t.throwsAsync(store.get('a'), { instanceOf: StoreClosed });
  t.is(seen.length, 5);
  t.is(seen[4]?.operation, 'get');
  t.true(seen[4]?.error instanceof StoreClosed);
});
