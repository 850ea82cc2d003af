/**
 * Which failed etcd calls are repeated (src/store/etcd-calls.ts): a write
 * only when it provably never left this process.
 */
import test from 'ava';
import { GRPCUnavailableError } from 'etcd3';
import { retrying } from '../../src/store/etcd-calls.js';

/** An attempt that fails with `message` (as grpc-js words UNAVAILABLE) `times` times, then succeeds. */
function failing(message: string, times: number) {
  let calls = 0;
  return {
    attempt: async () => {
      calls += 1;
      if (calls <= times) throw new GRPCUnavailableError(message);
      return 'written';
    },
    calls: () => calls,
  };
}

test('a write dropped before it started, by a channel closing or with no connection yet, is repeated', async (t) => {
  for (const message of ['14 UNAVAILABLE: Channel closed before call started', '14 UNAVAILABLE: No connection established']) {
    const call = failing(message, 2);
    t.is(await retrying(5_000, 'unsent', call.attempt, () => false), 'written', message);
    t.is(call.calls(), 3, message);
  }
});

test('a write that may have reached etcd is not repeated; a read is', async (t) => {
  const write = failing('14 UNAVAILABLE: Connection dropped', 1);
  await t.throwsAsync(retrying(5_000, 'unsent', write.attempt, () => false), { instanceOf: GRPCUnavailableError });
  t.is(write.calls(), 1);
  const read = failing('14 UNAVAILABLE: Connection dropped', 1);
  t.is(await retrying(5_000, 'always', read.attempt, () => false), 'written');
  t.is(read.calls(), 2);
});
