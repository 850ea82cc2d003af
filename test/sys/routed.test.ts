import test from 'ava';
import { routedSubnets } from '../../src/sys/routed.js';
import { addNetns, removeNetns, run, uniqueName } from '../helpers/kernel.js';

test('routedSubnets lists the main table\'s routes and the addresses\' prefixes, IPv4 and IPv6, without default routes', async (t) => {
  const name = uniqueName('r');
  const path = await addNetns(name);
  t.teardown(() => removeNetns(name));
  const ip = async (...args: string[]) => {
    const result = await run('ip', ['-n', name, ...args]);
    if (result.code !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
  };
  await ip('link', 'add', 'b0', 'type', 'bridge');
  await ip('link', 'set', 'b0', 'up');
  await ip('addr', 'add', '172.17.0.1/16', 'dev', 'b0');
  await ip('addr', 'add', 'fd00:d0c::1/64', 'dev', 'b0', 'nodad');
  await ip('route', 'add', '198.18.40.0/24', 'via', '172.17.0.254');
  await ip('route', 'add', 'default', 'via', '172.17.0.254');
  // Down, so the kernel routes none of its prefix: only the address says it is taken.
  await ip('link', 'add', 'b1', 'type', 'bridge');
  await ip('addr', 'add', '192.168.77.5/24', 'dev', 'b1');

  const routed = await routedSubnets(path);
  for (const expected of ['172.17.0.0/16', '198.18.40.0/24', 'fd00:d0c::/64', '172.17.0.1/16', 'fd00:d0c::1/64', '192.168.77.5/24']) {
    t.true(routed.includes(expected), `${expected} in ${routed.join(', ')}`);
  }
  t.false(routed.includes('default'));
});
