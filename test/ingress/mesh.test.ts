/**
 * The routing mesh over in-memory stores, with records as the controller
 * writes them, a kernel double that records what each namespace is given,
 * and an actions double that records what the mesh asks of the controller.
 * The scripts' own text is tested in mesh-rules.test.ts.
 */
import test from 'ava';
import { type MeshActions, type MeshKernel, IngressMesh, INGRESS_SANDBOX_LABEL } from '../../src/ingress/mesh.js';
import { entryScript, publishedScript } from '../../src/ingress/mesh-rules.js';
import { silentLogger } from '../../src/log.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord, ServiceRecord } from '../../src/records.js';
import { keys } from '../../src/repository/keys.js';
import { encodeRecord } from '../../src/repository/schema.js';
import { MemoryStore } from '../../src/store/memory.js';
import { networkRecord } from '../helpers/records.js';
import { waitFor } from '../helpers/wait.js';

const CREATED = '2026-01-01T00:00:00.000000000Z';
const HOST_NS = '/proc/self/ns/net';

class RecordingKernel implements MeshKernel {
  readonly nft = new Map<string, string[]>();
  readonly batches = new Map<string, string[][]>();
  readonly forwarding: string[] = [];
  readonly forgotten: string[] = [];
  failing = false;

  async applyNft(netnsPath: string, script: string): Promise<void> {
    if (this.failing) throw new Error('nft: Operation not permitted');
    this.nft.set(netnsPath, [...(this.nft.get(netnsPath) ?? []), script]);
  }
  async ipBatch(netnsPath: string, lines: readonly string[]): Promise<void> {
    this.batches.set(netnsPath, [...(this.batches.get(netnsPath) ?? []), [...lines]]);
  }
  async rulePriorities(): Promise<number[]> {
    return [];
  }
  async enableForwarding(netnsPath: string): Promise<void> {
    this.forwarding.push(netnsPath);
  }
  async forgetFlows(netnsPath: string, address: string): Promise<void> {
    this.forgotten.push(`${netnsPath} ${address}`);
  }
  last(netnsPath: string): string | undefined {
    return this.nft.get(netnsPath)?.at(-1);
  }
}

class RecordingActions implements MeshActions {
  readonly asked: string[] = [];
  async openEntry(): Promise<void> {
    this.asked.push('open');
  }
  async closeEntry(): Promise<void> {
    this.asked.push('close');
  }
  async attach(sandboxId: string): Promise<void> {
    this.asked.push(`attach ${sandboxId}`);
  }
  async detach(sandboxId: string): Promise<void> {
    this.asked.push(`detach ${sandboxId}`);
  }
}

function network(id: string, extra: Partial<NetworkRecord> = {}): NetworkRecord {
  return networkRecord({
    id,
    name: id,
    driver: 'overlay',
    scope: 'global',
    ipam: { driver: 'default', options: {}, config: [{ subnet: '10.0.9.0/24', gateway: '10.0.9.1' }] },
    ...extra,
  });
}

function endpoint(id: string, networkId: string, address: string, extra: Partial<EndpointRecord> = {}): EndpointRecord {
  const mac = `02:42:${address.split('.').map((b) => Number(b).toString(16).padStart(2, '0')).join(':')}`;
  return { id, name: id, networkId, macAddress: mac, ipv4Address: `${address}/24`, aliases: [], ...extra };
}

function sandbox(id: string, extra: Partial<SandboxRecord> = {}): SandboxRecord {
  return { id, name: id, netnsPath: `/var/run/netns/${id}`, ownsNetns: true, created: CREATED, labels: {}, ...extra };
}

function service(id: string, extra: Partial<ServiceRecord> = {}): ServiceRecord {
  return { id, name: id, endpointMode: 'vip', labels: {}, created: CREATED, scope: 'global', networks: [{ networkId: 'front', virtualIp: '10.0.1.2/24' }], ...extra };
}

async function putAll(store: MemoryStore, records: { key: string; value: unknown }[]): Promise<void> {
  await store.txn({ put: records.map(({ key, value }) => ({ key, value: encodeRecord(value as never) })) });
}

/** A host with its ingress sandbox on the ingress network (10.0.9.2, gateway bridge 172.18.0.3) and two local task sandboxes. */
async function cluster() {
  const local = new MemoryStore();
  const global = new MemoryStore();
  await putAll(global, [
    { key: keys.network('front'), value: network('front', { ipam: { driver: 'default', options: {}, config: [{ subnet: '10.0.1.0/24', gateway: '10.0.1.1' }] } }) },
    { key: keys.network('ingress'), value: network('ingress', { ingress: true }) },
    { key: keys.endpoint('ingress', 'entry-ep'), value: endpoint('entry-ep', 'ingress', '10.0.9.2', { sandboxId: 'sbx-entry', ingressEntry: true, ifName: 'eth0' }) },
    { key: keys.endpoint('ingress', 'other-entry'), value: endpoint('other-entry', 'ingress', '10.0.9.3', { sandboxId: 'remote-entry', ingressEntry: true }) },
  ]);
  await putAll(local, [
    { key: keys.network('gw'), value: network('gw', { driver: 'bridge', scope: 'local' }) },
    { key: keys.sandbox('sbx-entry'), value: sandbox('sbx-entry', { labels: { [INGRESS_SANDBOX_LABEL]: 'true' } }) },
    { key: keys.endpoint('gw', 'entry-gw'), value: endpoint('entry-gw', 'gw', '172.18.0.3', { sandboxId: 'sbx-entry', defaultGateway: true, ifName: 'eth1' }) },
    { key: keys.sandbox('t1'), value: sandbox('t1') },
    { key: keys.sandbox('t2'), value: sandbox('t2') },
    { key: keys.endpoint('gw', 't1-gw'), value: endpoint('t1-gw', 'gw', '172.18.0.4', { sandboxId: 't1', defaultGateway: true, ifName: 'eth1' }) },
  ]);
  const kernel = new RecordingKernel();
  const actions = new RecordingActions();
  const up = new Set<string>();
  const listeners = new Set<() => void>();
  const mesh = await IngressMesh.start({
    localStore: local,
    globalStore: global,
    hostNetnsPath: HOST_NS,
    kernel,
    actions,
    reachability: {
      reachable: (_networkId, endpointId) => up.has(endpointId),
      onChange: (listener) => {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    },
    logger: silentLogger,
  });
  const setReachable = (endpointId: string, reachable: boolean) => {
    if (reachable) up.add(endpointId);
    else up.delete(endpointId);
    for (const listener of listeners) listener();
  };
  return { local, global, kernel, actions, mesh, setReachable };
}

const WEB = service('web', { ports: [{ protocol: 'tcp', targetPort: 80, publishedPort: 8080, publishMode: 'ingress' }] });

test('no published service: the host table is emptied, nothing is asked; an ingress sandbox no service needs is closed', async (t) => {
  const { kernel, actions, mesh } = await cluster();
  t.teardown(() => mesh.stop());
  t.is(kernel.last(HOST_NS), publishedScript([]));
  t.deepEqual(actions.asked, ['close']);
});

test('ingress mode: the host sends the port to its ingress sandbox, which sends it to live tasks; local tasks are attached', async (t) => {
  const { global, kernel, actions, mesh, setReachable } = await cluster();
  t.teardown(() => mesh.stop());
  await putAll(global, [
    { key: keys.service('web'), value: WEB },
    { key: keys.endpoint('front', 't1-front'), value: endpoint('t1-front', 'front', '10.0.1.5', { sandboxId: 't1', service: 'web', ifName: 'eth0' }) },
    { key: keys.endpoint('front', 'r1-front'), value: endpoint('r1-front', 'front', '10.0.1.7', { sandboxId: 'remote-1', service: 'web' }) },
    { key: keys.endpoint('ingress', 'r1-ingress'), value: endpoint('r1-ingress', 'ingress', '10.0.9.7', { sandboxId: 'remote-1', ifName: 'eth2' }) },
  ]);
  await waitFor('t1 attached', () => (actions.asked.includes('attach t1') ? true : undefined));
  await mesh.settled();
  t.is(kernel.last(HOST_NS), publishedScript([{ protocol: 'tcp', port: 8080, targets: [{ address: '172.18.0.3', port: 8080, subnet: '172.18.0.0/24' }] }]));
  t.is(kernel.last('/var/run/netns/sbx-entry'), entryScript('172.18.0.3', []), 'the remote task is not reachable yet, t1 not yet on ingress');
  t.false(actions.asked.includes('attach t2'), 't2 is no task');

  setReachable('r1-ingress', true);
  await putAll(global, [{ key: keys.endpoint('ingress', 't1-ingress'), value: endpoint('t1-ingress', 'ingress', '10.0.9.5', { sandboxId: 't1', ifName: 'eth2' }) }]);
  await waitFor('both tasks in the entry table', () => (kernel.last('/var/run/netns/sbx-entry')?.includes('10.0.9.7 . 80') === true ? true : undefined));
  await mesh.settled();
  t.is(
    kernel.last('/var/run/netns/sbx-entry'),
    entryScript('172.18.0.3', [{ protocol: 'tcp', port: 8080, targets: [{ address: '10.0.9.5', port: 80 }, { address: '10.0.9.7', port: 80 }] }]),
  );
  t.true(kernel.forwarding.includes('/var/run/netns/sbx-entry'));
  // t1 gets reply rules naming every ingress sandbox, by MAC, with marks from their addresses.
  const reply = kernel.last('/var/run/netns/t1') ?? '';
  t.regex(reply, /02:42:0a:00:09:02 : 0x4e000902, 02:42:0a:00:09:03 : 0x4e000903/);
  t.regex(reply, /device "eth2"/);
  t.deepEqual(kernel.batches.get('/var/run/netns/t1')?.at(-1)?.at(-1), 'route replace default via 10.0.9.1 dev eth2 onlink table 30100');

  // The remote task's host goes quiet: it leaves the rotation, and the flows sent to it are forgotten.
  setReachable('r1-ingress', false);
  await waitFor('the remote task out', () => (kernel.last('/var/run/netns/sbx-entry')?.includes('10.0.9.7') === false ? true : undefined));
  await mesh.settled();
  t.true(kernel.forgotten.includes('/var/run/netns/sbx-entry 10.0.9.7'));
});

test('host mode and a leaving task: the host sends straight to local tasks, a task marked leaving goes at once', async (t) => {
  const { global, kernel, mesh } = await cluster();
  t.teardown(() => mesh.stop());
  const hostMode = service('web', { ports: [{ protocol: 'udp', targetPort: 53, publishedPort: 5353, publishMode: 'host' }] });
  await putAll(global, [
    { key: keys.service('web'), value: hostMode },
    { key: keys.endpoint('front', 't1-front'), value: endpoint('t1-front', 'front', '10.0.1.5', { sandboxId: 't1', service: 'web', ifName: 'eth0' }) },
    { key: keys.endpoint('front', 'r1-front'), value: endpoint('r1-front', 'front', '10.0.1.7', { sandboxId: 'remote-1', service: 'web' }) },
  ]);
  const expected = publishedScript([{ protocol: 'udp', port: 5353, targets: [{ address: '172.18.0.4', port: 53, subnet: '172.18.0.0/24' }] }]);
  await waitFor('the host table', () => (kernel.last(HOST_NS) === expected ? true : undefined));
  await putAll(global, [
    { key: keys.endpoint('front', 't1-front'), value: endpoint('t1-front', 'front', '10.0.1.5', { sandboxId: 't1', service: 'web', ifName: 'eth0', pending: 'disconnect' }) },
  ]);
  await waitFor('the port closed', () => (kernel.last(HOST_NS) === publishedScript([]) ? true : undefined));
  await mesh.settled();
  t.true(kernel.forgotten.includes(`${HOST_NS} 172.18.0.4`));
});

test('a write that fails is tried again', async (t) => {
  const { global, kernel, mesh } = await cluster();
  t.teardown(() => mesh.stop());
  kernel.failing = true;
  await putAll(global, [{ key: keys.service('web'), value: WEB }]);
  await mesh.settled();
  kernel.failing = false;
  const expected = publishedScript([{ protocol: 'tcp', port: 8080, targets: [{ address: '172.18.0.3', port: 8080, subnet: '172.18.0.0/24' }] }]);
  await waitFor('the retry', () => (kernel.last(HOST_NS) === expected ? true : undefined), 10_000);
  t.pass();
});

test('a task no longer of any published service is detached from the ingress network', async (t) => {
  const { global, actions, mesh } = await cluster();
  t.teardown(() => mesh.stop());
  await putAll(global, [{ key: keys.endpoint('ingress', 't2-ingress'), value: endpoint('t2-ingress', 'ingress', '10.0.9.6', { sandboxId: 't2', ifName: 'eth2' }) }]);
  await waitFor('t2 detached', () => (actions.asked.includes('detach t2') ? true : undefined));
  t.pass();
});
