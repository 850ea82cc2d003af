// Child process for the concurrent-writer test: `increment.ts DIR KEY COUNT`
// adds 1 to KEY COUNT times with read + compare-and-swap, then prints its retry count.
import { openTestStore } from './open-store.js';

const [dir, key, countText] = process.argv.slice(2);
if (dir === undefined || key === undefined || countText === undefined) throw new Error('usage: increment.ts DIR KEY COUNT');
const store = await openTestStore(dir);
let retries = 0;
for (let done = 0; done < Number(countText); ) {
  const current = await store.get(key);
  const next = String(Number(current?.value ?? '0') + 1);
  const result = await store.txn({
    compare: [{ key, modRevision: current?.modRevision ?? 0 }],
    put: [{ key, value: next }],
  });
  if (result.succeeded) done += 1;
  else retries += 1;
}
await store.close();
process.stdout.write(`${retries}\n`);
