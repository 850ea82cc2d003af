// Child process: `txn.ts DIR JSON...` runs each txn (a TxnRequest as JSON) in turn and prints each TxnResult as a JSON line.
import { openTestStore } from './open-store.js';
import type { TxnRequest } from '../../../src/store/types.js';

const [dir, ...requests] = process.argv.slice(2);
if (dir === undefined) throw new Error('usage: txn.ts DIR JSON...');
const store = await openTestStore(dir);
for (const request of requests) {
  const result = await store.txn(JSON.parse(request) as TxnRequest);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
await store.close();
