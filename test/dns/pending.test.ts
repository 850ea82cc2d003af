/**
 * An endpoint stored marked pending is half joined (its interface may not be
 * in the sandbox yet, or the join may be undone) or on its way out: the
 * embedded DNS must not give its name. Real namespace, `dig` at 127.0.0.11,
 * records written to the store as the controller writes them.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { EmbeddedDns } from '../../src/dns/embedded.js';
import type { EndpointPending, EndpointRecord, NetworkRecord, SandboxRecord } from '../../src/records.js';
import { silentLogger } from '../../src/log.js';
import { keys } from '../../src/repository/keys.js';
import { MemoryStore } from '../../src/store/memory.js';
import { dig, digUntil } from '../helpers/dig.js';
import { addNetns, removeNetns, uniqueName } from '../helpers/kernel.js';

const network: NetworkRecord = {
  id: 'n'.repeat(64),
  name: 'front',
  driver: 'bridge',
  scope: 'local',
  created: '2026-12-05T00:00:00.000000000Z',
  internal: true,
  attachable: false,
  ingress: false,
  enableIPv4: true,
  enableIPv6: false,
  ipam: { driver: 'default', options: {}, config: [{ subnet: '10.77.0.0/24', gateway: '10.77.0.1' }] },
  options: {},
  labels: {},
};

function endpoint(name: string, address: string, pending?: EndpointPending): EndpointRecord {
  return {
    id: name.padEnd(64, '0'),
    name,
    networkId: network.id,
    sandboxId: 's'.repeat(64),
    macAddress: '02:42:0a:4d:00:02',
    ipv4Address: `${address}/24`,
    aliases: [],
    ifName: 'eth0',
    ...(pending !== undefined ? { pending } : {}),
  };
}

test('a pending endpoint is no name: not while its connect or join runs, not once its leave begins', async (t) => {
  const sandboxNs = uniqueName('dp');
  const netnsPath = await addNetns(sandboxNs);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-dns-pending-'));
  const store = new MemoryStore();
  let dns: EmbeddedDns | undefined;
  t.teardown(async () => {
    await dns?.stop();
    await store.close();
    await removeNetns(sandboxNs);
    await rm(stateDir, { recursive: true, force: true });
  });
  const sandbox: SandboxRecord = { id: 's'.repeat(64), name: 'box', netnsPath, ownsNetns: false, created: network.created, labels: {} };
  const write = async (record: EndpointRecord) => {
    await store.txn({ put: [{ key: keys.endpoint(record.networkId, record.id), value: JSON.stringify(record) }] });
  };
  await store.txn({
    put: [
      { key: keys.network(network.id), value: JSON.stringify(network) },
      { key: keys.sandbox(sandbox.id), value: JSON.stringify(sandbox) },
    ],
  });
  dns = await EmbeddedDns.start({ localStore: store, upstreams: [], stateDir, logger: silentLogger });

  for (const pending of ['connect', 'join'] as const) {
    await write(endpoint(`half-${pending}`, '10.77.0.3', pending));
  }
  // Changes arrive in order: once the marker resolves, the pending ones were seen.
  await write(endpoint('marker', '10.77.0.9'));
  t.deepEqual(await digUntil(sandboxNs, ['10.77.0.9'], 10_000, 'marker'), ['10.77.0.9']);
  t.deepEqual(await dig(sandboxNs, 'half-connect'), [], 'a connect under way gives no name');
  t.deepEqual(await dig(sandboxNs, 'half-join'), [], 'a join under way gives no name');

  await write(endpoint('half-join', '10.77.0.3'));
  t.deepEqual(await digUntil(sandboxNs, ['10.77.0.3'], 10_000, 'half-join'), ['10.77.0.3'], 'the completed join gives the name');

  for (const pending of ['leave', 'disconnect'] as const) {
    await write(endpoint('half-join', '10.77.0.3', pending));
    t.deepEqual(await digUntil(sandboxNs, [], 10_000, 'half-join'), [], `the name goes when the ${pending} begins`);
    await write(endpoint('half-join', '10.77.0.3'));
    t.deepEqual(await digUntil(sandboxNs, ['10.77.0.3'], 10_000, 'half-join'), ['10.77.0.3']);
  }
});
