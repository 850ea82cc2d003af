/**
 * The embedded DNS on an in-memory store, serving one sandbox: a real
 * namespace whose listener at 127.0.0.11 tests ask with dig or a socket,
 * and records written as the controller writes them. Removed at teardown.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { EmbeddedDns, type EmbeddedDnsOptions } from '../../src/dns/embedded.js';
import { silentLogger } from '../../src/log.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord } from '../../src/records.js';
import { keys } from '../../src/repository/keys.js';
import { MemoryStore } from '../../src/store/memory.js';
import { addNetns, removeNetns, uniqueName } from '../helpers/kernel.js';

/** An internal bridge network (no forwarding), 10.77.0.0/24, IPv6 enabled. */
export const NETWORK: NetworkRecord = {
  id: 'n'.repeat(64),
  name: 'front',
  driver: 'bridge',
  scope: 'local',
  created: '2026-12-05T00:00:00.000000000Z',
  internal: true,
  attachable: false,
  ingress: false,
  enableIPv4: true,
  enableIPv6: true,
  ipam: { driver: 'default', options: {}, config: [{ subnet: '10.77.0.0/24', gateway: '10.77.0.1' }] },
  options: {},
  labels: {},
};

const SANDBOX_ID = 's'.repeat(64);

/** An endpoint of NETWORK joined to the fixture's sandbox, named `name`, at `ipv4`. */
export function joinedEndpoint(name: string, ipv4: string, extra: Partial<EndpointRecord> = {}): EndpointRecord {
  return {
    id: name.padEnd(64, '0'),
    name,
    networkId: NETWORK.id,
    sandboxId: SANDBOX_ID,
    macAddress: '02:42:0a:4d:00:02',
    ipv4Address: `${ipv4}/24`,
    aliases: [],
    ifName: 'eth0',
    ...extra,
  };
}

export interface DnsFixture {
  /** The sandbox's namespace, by name (for dig) and path. */
  readonly sandboxNs: string;
  readonly netnsPath: string;
  readonly dns: EmbeddedDns;
  /** Stores the endpoint record, as the controller does; the DNS sees it through its watch. */
  write(record: EndpointRecord): Promise<void>;
}

/** NETWORK, one sandbox and `endpoints` in a store, and the DNS started on it with `options`. */
export async function startDnsFixture(
  t: ExecutionContext,
  endpoints: readonly EndpointRecord[],
  options: Partial<EmbeddedDnsOptions> = {},
): Promise<DnsFixture> {
  const sandboxNs = uniqueName('dx');
  const netnsPath = await addNetns(sandboxNs);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-dns-fixture-'));
  const store = new MemoryStore();
  let dns: EmbeddedDns | undefined;
  t.teardown(async () => {
    await dns?.stop();
    await store.close();
    await removeNetns(sandboxNs);
    await rm(stateDir, { recursive: true, force: true });
  });
  const sandbox: SandboxRecord = { id: SANDBOX_ID, name: 'box', netnsPath, ownsNetns: false, created: NETWORK.created, labels: {} };
  const write = async (record: EndpointRecord) => {
    await store.txn({ put: [{ key: keys.endpoint(record.networkId, record.id), value: JSON.stringify(record) }] });
  };
  await store.txn({
    put: [
      { key: keys.network(NETWORK.id), value: JSON.stringify(NETWORK) },
      { key: keys.sandbox(sandbox.id), value: JSON.stringify(sandbox) },
    ],
  });
  for (const record of endpoints) await write(record);
  dns = await EmbeddedDns.start({ localStore: store, upstreams: [], stateDir, logger: silentLogger, ...options });
  return { sandboxNs, netnsPath, dns, write };
}
