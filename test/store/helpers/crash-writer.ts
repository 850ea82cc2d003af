// Child process for the crash test: `crash-writer.ts DIR` increments the key
// `counter` forever and prints each value once its txn has resolved, until killed.
import { writeSync } from 'node:fs';
import { openTestStore } from './open-store.js';

const [dir] = process.argv.slice(2);
if (dir === undefined) throw new Error('usage: crash-writer.ts DIR');
const store = await openTestStore(dir);
for (;;) {
  const current = await store.get('counter');
  const next = Number(current?.value ?? '0') + 1;
  const result = await store.txn({
    compare: [{ key: 'counter', modRevision: current?.modRevision ?? 0 }],
    // A second, larger key makes each state file span more than one write.
    put: [{ key: 'counter', value: String(next) }, { key: 'padding', value: 'x'.repeat(2000 + (next % 100)) }],
  });
  // writeSync puts the line in the pipe before the next txn: once it returns, the parent will see the value
  // (process.stdout queues a write the pipe does not take at once, and a SIGKILL loses the queue).
  if (result.succeeded) writeSync(1, `${next}\n`);
}
