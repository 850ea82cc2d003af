/**
 * An endpoint stored marked pending is half joined (its interface may not be
 * in the sandbox yet, or the join may be undone) or on its way out: the
 * embedded DNS must not give its name. Real namespace, `dig` at 127.0.0.11,
 * records written to the store as the controller writes them.
 */
import test from 'ava';
import { dig, digUntil } from '../helpers/dig.js';
import { joinedEndpoint, startDnsFixture } from './embedded-fixture.js';

test('a pending endpoint is no name: not while its connect or join runs, not once its leave begins', async (t) => {
  const { sandboxNs, write } = await startDnsFixture(t, []);
  for (const pending of ['connect', 'join'] as const) {
    await write(joinedEndpoint(`half-${pending}`, '10.77.0.3', { pending }));
  }
  // Changes arrive in order: once the marker resolves, the pending ones were seen.
  await write(joinedEndpoint('marker', '10.77.0.9'));
  t.deepEqual(await digUntil(sandboxNs, ['10.77.0.9'], 10_000, 'marker'), ['10.77.0.9']);
  t.deepEqual(await dig(sandboxNs, 'half-connect'), [], 'a connect under way gives no name');
  t.deepEqual(await dig(sandboxNs, 'half-join'), [], 'a join under way gives no name');

  await write(joinedEndpoint('half-join', '10.77.0.3'));
  t.deepEqual(await digUntil(sandboxNs, ['10.77.0.3'], 10_000, 'half-join'), ['10.77.0.3'], 'the completed join gives the name');

  for (const pending of ['leave', 'disconnect'] as const) {
    await write(joinedEndpoint('half-join', '10.77.0.3', { pending }));
    t.deepEqual(await digUntil(sandboxNs, [], 10_000, 'half-join'), [], `the name goes when the ${pending} begins`);
    await write(joinedEndpoint('half-join', '10.77.0.3'));
    t.deepEqual(await digUntil(sandboxNs, ['10.77.0.3'], 10_000, 'half-join'), ['10.77.0.3']);
  }
});
