import type { Store, Watch, WatchEvent } from './types.js';

/**
 * Follows the keys under `prefix`: watches first, then lists, so nothing
 * written between the two is missed, and the list does not undo what a
 * newer event already reported. Each key's changes reach `apply` in order.
 */
export async function followPrefix(store: Store, prefix: string, apply: (event: WatchEvent) => void): Promise<Watch> {
  const seen = new Set<string>();
  const watch = await store.watch(prefix, (event) => {
    seen.add(event.type === 'put' ? event.kv.key : event.key);
    apply(event);
  });
  try {
    for (const kv of await store.list(prefix)) {
      if (!seen.has(kv.key)) apply({ type: 'put', kv });
    }
  } catch (err) {
    await watch.cancel();
    throw err;
  }
  return watch;
}
