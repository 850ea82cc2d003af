/**
 * The load balancer over in-memory stores, with records as the controller
 * writes them and a RulesPort double that records each script per
 * namespace. Expected scripts come from vip-rules.ts, whose text has its own
 * golden tests.
 */
import test, { type ExecutionContext } from 'ava';
import { type Reachability, type RulesPort, ServiceBalancer } from '../../src/ingress/balancer.js';
import { type VipTable, changeScript, replaceScript } from '../../src/ingress/vip-rules.js';
import { type Logger, silentLogger } from '../../src/log.js';
import type { EndpointRecord, SandboxRecord, ServiceNetwork, ServiceRecord } from '../../src/records.js';
import { keys } from '../../src/repository/keys.js';
import { encodeRecord } from '../../src/repository/schema.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { Store, TxnRequest, WatchEvent } from '../../src/store/types.js';
import { waitFor } from '../helpers/wait.js';

const CREATED = '2026-01-01T00:00:00.000000000Z';
const FRONT = 'net-front';
const BACK = 'net-back';
const OVERLAY = 'net-overlay';

/** Records each script applied (per namespace) and each flow forgotten; fails every apply in the namespaces of `failingIn`. */
class RecordingRules implements RulesPort {
  readonly scripts = new Map<string, string[]>();
  readonly forgotten: string[] = [];
  readonly failingIn = new Set<string>();

  async apply(netnsPath: string, script: string): Promise<void> {
    if (this.failingIn.has(netnsPath)) throw new Error(`nft -f in ${netnsPath} failed: Operation not permitted`);
    const list = this.scripts.get(netnsPath);
    if (list === undefined) this.scripts.set(netnsPath, [script]);
    else list.push(script);
  }

  async forgetFlows(netnsPath: string, virtualIp: string, task: string): Promise<void> {
    this.forgotten.push(`${netnsPath} ${virtualIp} -> ${task}`);
  }

  of(sandboxId: string): string[] {
    return this.scripts.get(netns(sandboxId)) ?? [];
  }

  last(sandboxId: string): string | undefined {
    return this.of(sandboxId).at(-1);
  }
}

/** Other hosts' endpoints, reachable or not as the test says. */
class SwitchedReachability implements Reachability {
  readonly asked: string[] = [];
  private readonly up = new Set<string>();
  private readonly listeners = new Set<() => void>();

  reachable(networkId: string, endpointId: string): boolean {
    this.asked.push(`${networkId}/${endpointId}`);
    return this.up.has(endpointId);
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  set(endpointId: string, reachable: boolean): void {
    if (reachable) this.up.add(endpointId);
    else this.up.delete(endpointId);
    for (const listener of this.listeners) listener();
  }
}

/**
 * A MemoryStore whose watches, while `lagging`, hold their events until
 * `catchUp` (as a slow etcd watch does); whose reads, while `slowReads`,
 * answer what the store held when asked, but only at `answerReads`; and
 * which refuses writes of the balancer's marks while `refusingMarks` (a
 * local store that failed).
 */
class TestStore implements Store {
  lagging = false;
  slowReads = false;
  refusingMarks = false;
  private readonly held: (() => void)[] = [];
  private readonly heldReads: (() => void)[] = [];
  readonly inner = new MemoryStore();

  get(key: string) {
    const answer = this.inner.get(key);
    if (!this.slowReads) return answer;
    return new Promise<Awaited<typeof answer>>((resolve, reject) => this.heldReads.push(() => answer.then(resolve, reject)));
  }
  list(prefix: string) {
    return this.inner.list(prefix);
  }
  async txn(request: TxnRequest) {
    const touched = [...(request.put ?? []).map((put) => put.key), ...(request.delete ?? [])];
    if (this.refusingMarks && touched.some((key) => key.startsWith(keys.balancedSandboxes))) throw new Error('database is locked');
    return this.inner.txn(request);
  }
  watch(prefix: string, onEvent: (event: WatchEvent) => void) {
    return this.inner.watch(prefix, (event) => {
      if (this.lagging) this.held.push(() => onEvent(event));
      else onEvent(event);
    });
  }
  close() {
    return this.inner.close();
  }

  /** Delivers the held events one at a time, each followed by `between` (so that each is acted on before the next comes). */
  async catchUp(between: () => Promise<void>): Promise<void> {
    this.lagging = false;
    for (const deliver of this.held.splice(0)) {
      deliver();
      await between();
    }
  }

  answerReads(): void {
    this.slowReads = false;
    for (const answer of this.heldReads.splice(0)) answer();
  }
}

function netns(sandboxId: string): string {
  return `/var/run/netns/${sandboxId}`;
}

function sandbox(id: string, fields: Partial<SandboxRecord> = {}): SandboxRecord {
  return { id, name: id.replace(/^sb-/, ''), netnsPath: netns(id), ownsNetns: true, created: CREATED, labels: {}, ...fields };
}

let macCounter = 0;

/** A joined endpoint at `address` (the /24 is added). */
function endpoint(id: string, networkId: string, sandboxId: string, address: string, fields: Partial<EndpointRecord> = {}): EndpointRecord {
  macCounter += 1;
  return {
    id,
    name: id.replace(/^ep-/, ''),
    networkId,
    sandboxId,
    macAddress: `02:42:0a:00:00:${(macCounter % 256).toString(16).padStart(2, '0')}`,
    ipv4Address: `${address}/24`,
    aliases: [],
    ifName: 'eth0',
    ...fields,
  };
}

function service(id: string, networks: ServiceNetwork[], fields: Partial<ServiceRecord> = {}): ServiceRecord {
  return { id, name: id.replace(/^svc-/, ''), endpointMode: 'vip', labels: {}, created: CREATED, scope: 'local', networks, ...fields };
}

type AnyRecord = { kind: 'sandbox'; record: SandboxRecord } | { kind: 'endpoint'; record: EndpointRecord } | { kind: 'service'; record: ServiceRecord };

const sb = (record: SandboxRecord): AnyRecord => ({ kind: 'sandbox', record });
const ep = (record: EndpointRecord): AnyRecord => ({ kind: 'endpoint', record });
const svc = (record: ServiceRecord): AnyRecord => ({ kind: 'service', record });

function keyOf(item: AnyRecord): string {
  if (item.kind === 'sandbox') return keys.sandbox(item.record.id);
  if (item.kind === 'endpoint') return keys.endpoint(item.record.networkId, item.record.id);
  return keys.service(item.record.id);
}

/** Writes the records in one txn, as the controller does; resolves to their keys. */
async function write(store: Store, ...items: AnyRecord[]): Promise<string[]> {
  await store.txn({ put: items.map((item) => ({ key: keyOf(item), value: encodeRecord(item.record) })) });
  return items.map(keyOf);
}

function vips(entries: Record<string, readonly string[]>): VipTable {
  return new Map(Object.entries(entries));
}

interface Harness {
  readonly localStore: Store;
  readonly rules: RecordingRules;
  readonly warnings: string[];
  start(): Promise<ServiceBalancer>;
}

function harness(
  t: ExecutionContext,
  options: { localStore?: Store; globalStore?: Store; reachability?: Reachability } = {},
): Harness {
  const localStore = options.localStore ?? new MemoryStore();
  const rules = new RecordingRules();
  const warnings: string[] = [];
  const logger: Logger = { ...silentLogger, warn: (message) => warnings.push(message) };
  return {
    localStore,
    rules,
    warnings,
    async start() {
      const balancer = await ServiceBalancer.start({
        localStore,
        ...(options.globalStore !== undefined ? { globalStore: options.globalStore } : {}),
        ...(options.reachability !== undefined ? { reachability: options.reachability } : {}),
        rules,
        logger,
      });
      t.teardown(() => balancer.stop());
      return balancer;
    },
  };
}

/** Waits until the sandbox's namespace has had `count` scripts and no write is under way. */
async function scripts(h: Harness, balancer: ServiceBalancer, sandboxId: string, count: number): Promise<string[]> {
  await waitFor(`${count} scripts in ${sandboxId}`, () => (h.rules.of(sandboxId).length >= count ? true : undefined), 5000);
  await balancer.settled();
  return h.rules.of(sandboxId);
}

/** Resolves once what the balancer was told so far is in every sandbox's rules (its flush runs on setImmediate). */
async function actedOn(balancer: ServiceBalancer): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  await balancer.settled();
}

/**
 * A bridge-like local network FRONT: service web with VIP 10.0.0.2 and two
 * tasks (10.0.0.9 and 10.0.0.10, to show numeric order), and a client.
 */
const web = service('svc-web', [{ networkId: FRONT, virtualIp: '10.0.0.2/24' }]);
const web1 = endpoint('ep-web1', FRONT, 'sb-web1', '10.0.0.10', { service: web.id });
const web2 = endpoint('ep-web2', FRONT, 'sb-web2', '10.0.0.9', { service: web.id });
const client = endpoint('ep-client', FRONT, 'sb-client', '10.0.0.3');
const FRONT_RECORDS = [sb(sandbox('sb-web1')), sb(sandbox('sb-web2')), sb(sandbox('sb-client')), ep(web1), ep(web2), ep(client), svc(web)];
const FRONT_TABLE = vips({ '10.0.0.2': ['10.0.0.9', '10.0.0.10'] });

test('every sandbox on a network with a VIP service gets one table sending the VIP to its tasks, and is marked as holding it', async (t) => {
  const h = harness(t);
  await write(h.localStore, ...FRONT_RECORDS);
  const balancer = await h.start();

  t.deepEqual(h.rules.of('sb-client'), [replaceScript(FRONT_TABLE)]);
  t.deepEqual([...h.rules.scripts.keys()].sort(), ['sb-client', 'sb-web1', 'sb-web2'].map(netns), 'the tasks are clients of the VIP too');
  for (const sandboxId of ['sb-client', 'sb-web1', 'sb-web2']) {
    t.is((await h.localStore.get(keys.balancedSandbox(sandboxId)))?.value, sandboxId);
  }
  t.deepEqual(await balancer.balancing(web.id), [{ networkId: FRONT, virtualIp: '10.0.0.2', tasks: ['10.0.0.9', '10.0.0.10'] }]);
  t.deepEqual(await balancer.balancing('svc-unknown'), []);
  t.deepEqual(h.rules.forgotten, []);
  t.deepEqual(h.warnings, []);
});

test('a task that joins is in every rotation once reread resolves; one still joining (pending) is not, though its sandbox already gets the VIPs', async (t) => {
  const h = harness(t);
  await write(h.localStore, ...FRONT_RECORDS);
  const balancer = await h.start();

  const web3 = endpoint('ep-web3', FRONT, 'sb-web3', '10.0.0.11', { service: web.id, pending: 'join' });
  await write(h.localStore, sb(sandbox('sb-web3')));
  await balancer.reread('local', await write(h.localStore, ep(web3)));
  t.deepEqual(h.rules.of('sb-client'), [replaceScript(FRONT_TABLE)], 'a joining task is not live: the client is untouched');
  t.deepEqual(h.rules.of('sb-web3'), [replaceScript(FRONT_TABLE)], 'only a leave under way counts as gone: a joining sandbox is a client already');

  const { pending: _, ...joined } = web3;
  await balancer.reread('local', await write(h.localStore, ep(joined)));
  const withWeb3 = vips({ '10.0.0.2': ['10.0.0.9', '10.0.0.10', '10.0.0.11'] });
  t.is(h.rules.last('sb-client'), changeScript(FRONT_TABLE, withWeb3));
  t.is(h.rules.last('sb-web3'), changeScript(FRONT_TABLE, withWeb3));
  t.deepEqual((await balancer.balancing(web.id))[0]?.tasks, ['10.0.0.9', '10.0.0.10', '10.0.0.11']);
});

test("a task marked pending 'disconnect' leaves the rotation once reread resolves, and its flows are forgotten", async (t) => {
  const h = harness(t);
  await write(h.localStore, ...FRONT_RECORDS);
  const balancer = await h.start();

  await balancer.reread('local', await write(h.localStore, ep({ ...web1, pending: 'disconnect' })));
  const without = vips({ '10.0.0.2': ['10.0.0.9'] });
  t.deepEqual(h.rules.of('sb-client'), [replaceScript(FRONT_TABLE), changeScript(FRONT_TABLE, without)]);
  t.is(h.rules.last('sb-web2'), changeScript(FRONT_TABLE, without));
  t.true(h.rules.forgotten.includes(`${netns('sb-client')} 10.0.0.2 -> 10.0.0.10`));
  t.true(h.rules.forgotten.includes(`${netns('sb-web2')} 10.0.0.2 -> 10.0.0.10`));
  t.false(h.rules.forgotten.includes(`${netns('sb-client')} 10.0.0.2 -> 10.0.0.9`), 'flows to the task that stays are kept');
  t.is(h.rules.last('sb-web1'), replaceScript(new Map()), 'the leaving sandbox is on no service network any more: its table goes');
  t.is(await h.localStore.get(keys.balancedSandbox('sb-web1')), undefined);
  t.deepEqual((await balancer.balancing(web.id))[0]?.tasks, ['10.0.0.9']);

  await balancer.reread('local', await write(h.localStore, ep({ ...web2, pending: 'leave' })));
  const none = vips({ '10.0.0.2': [] });
  t.is(h.rules.last('sb-client'), changeScript(without, none), "a 'leave' too; no task left: the VIP's chain is emptied, not removed");
  t.true(h.rules.forgotten.includes(`${netns('sb-client')} 10.0.0.2 -> 10.0.0.9`));
});

test('a task on another host is live only while Reachability says so; a change of it rewrites the rules', async (t) => {
  const reachability = new SwitchedReachability();
  const globalStore = new MemoryStore();
  const h = harness(t, { globalStore, reachability });
  const api = service('svc-api', [{ networkId: OVERLAY, virtualIp: '10.1.0.2/24' }], { scope: 'global' });
  const local = endpoint('ep-api-local', OVERLAY, 'sb-api', '10.1.0.6', { service: api.id });
  const remote = endpoint('ep-api-remote', OVERLAY, 'sb-on-host2', '10.1.0.7', { service: api.id });
  const overlayClient = endpoint('ep-ov-client', OVERLAY, 'sb-client', '10.1.0.3');
  await write(h.localStore, sb(sandbox('sb-api')), sb(sandbox('sb-client')));
  await write(globalStore, svc(api), ep(local), ep(remote), ep(overlayClient));
  const balancer = await h.start();

  const localOnly = vips({ '10.1.0.2': ['10.1.0.6'] });
  const both = vips({ '10.1.0.2': ['10.1.0.6', '10.1.0.7'] });
  t.deepEqual(h.rules.of('sb-client'), [replaceScript(localOnly)]);
  t.true(reachability.asked.includes(`${OVERLAY}/${remote.id}`));
  t.false(reachability.asked.some((asked) => asked.endsWith(local.id)), 'this host’s endpoints need no asking');
  t.false(h.rules.scripts.has(netns('sb-on-host2')), 'another host’s sandbox is not this balancer’s');

  reachability.set(remote.id, true);
  t.deepEqual(await scripts(h, balancer, 'sb-client', 2), [replaceScript(localOnly), changeScript(localOnly, both)]);
  t.deepEqual((await balancer.balancing(api.id))[0]?.tasks, ['10.1.0.6', '10.1.0.7']);

  reachability.set(remote.id, false);
  t.is((await scripts(h, balancer, 'sb-client', 3))[2], changeScript(both, localOnly));
  t.true(h.rules.forgotten.includes(`${netns('sb-client')} 10.1.0.2 -> 10.1.0.7`));
  t.deepEqual((await balancer.balancing(api.id))[0]?.tasks, ['10.1.0.6']);
});

test('without a Reachability, only this host’s tasks are live', async (t) => {
  const globalStore = new MemoryStore();
  const h = harness(t, { globalStore });
  const api = service('svc-api', [{ networkId: OVERLAY, virtualIp: '10.1.0.2/24' }], { scope: 'global' });
  await write(h.localStore, sb(sandbox('sb-api')), sb(sandbox('sb-client')));
  await write(
    globalStore,
    svc(api),
    ep(endpoint('ep-api-local', OVERLAY, 'sb-api', '10.1.0.6', { service: api.id })),
    ep(endpoint('ep-api-remote', OVERLAY, 'sb-on-host2', '10.1.0.7', { service: api.id })),
    ep(endpoint('ep-ov-client', OVERLAY, 'sb-client', '10.1.0.3')),
  );
  await h.start();
  t.deepEqual(h.rules.of('sb-client'), [replaceScript(vips({ '10.1.0.2': ['10.1.0.6'] }))]);
});

test('a VIP new to a sandbox\'s table: the flows it tracked to that address before (never NATed) are forgotten; at start, none are', async (t) => {
  const h = harness(t);
  await write(h.localStore, ...FRONT_RECORDS);
  const balancer = await h.start();
  t.deepEqual(h.rules.forgotten, [], 'a first table forgets nothing: its flows to a VIP may be NATed ones');

  // The address was an endpoint's until now: a flow the client kept to it would skip the new DNAT and be refused.
  const api = service('svc-api', [{ networkId: FRONT, virtualIp: '10.0.0.20/24' }]);
  await balancer.reread('local', await write(h.localStore, svc(api)));
  t.deepEqual(
    [...h.rules.forgotten].sort(),
    ['sb-client', 'sb-web1', 'sb-web2'].map((sandboxId) => `${netns(sandboxId)} 10.0.0.20 -> 10.0.0.20`),
  );

  // A task of it joining adds no VIP: nothing more is forgotten.
  await write(h.localStore, sb(sandbox('sb-api1')));
  await balancer.reread('local', await write(h.localStore, ep(endpoint('ep-api1', FRONT, 'sb-api1', '10.0.0.21', { service: api.id }))));
  t.is(h.rules.forgotten.length, 3, h.rules.forgotten.join('\n'));
});

test('a service removed: its table goes from every sandbox and so does the mark', async (t) => {
  const h = harness(t);
  await write(h.localStore, ...FRONT_RECORDS);
  const balancer = await h.start();

  await h.localStore.txn({ delete: [keys.service(web.id)] });
  await balancer.reread('local', [keys.service(web.id)]);
  for (const sandboxId of ['sb-client', 'sb-web1', 'sb-web2']) {
    t.deepEqual(h.rules.of(sandboxId), [replaceScript(FRONT_TABLE), replaceScript(new Map())], sandboxId);
    t.is(await h.localStore.get(keys.balancedSandbox(sandboxId)), undefined, sandboxId);
  }
  t.deepEqual(await balancer.balancing(web.id), []);
  t.deepEqual(await h.localStore.list(keys.balancedSandboxes), []);
});

test('at start, a marked sandbox on no service network has its stale table deleted; a marked one whose record went loses its mark', async (t) => {
  const h = harness(t);
  // What a daemon that stopped before the service went leaves: marks, and sandboxes still joined to the network.
  const plain = endpoint('ep-old', BACK, 'sb-old', '10.2.0.5');
  await write(h.localStore, ...FRONT_RECORDS, sb(sandbox('sb-old')), sb(sandbox('sb-unmarked')), ep(plain));
  await write(h.localStore, ep(endpoint('ep-unmarked', BACK, 'sb-unmarked', '10.2.0.6')));
  await h.localStore.txn({
    put: ['sb-old', 'sb-gone', 'sb-client'].map((sandboxId) => ({ key: keys.balancedSandbox(sandboxId), value: sandboxId })),
  });
  await h.start();

  t.deepEqual(h.rules.of('sb-old'), [replaceScript(new Map())]);
  t.deepEqual(h.rules.of('sb-unmarked'), [], 'an unmarked sandbox on no service network is not touched');
  t.false(h.rules.scripts.has(netns('sb-gone')), 'a sandbox with no record has no namespace to clean');
  t.deepEqual(h.rules.of('sb-client'), [replaceScript(FRONT_TABLE)], 'a marked sandbox still on a service network gets its table anew');
  t.deepEqual(
    (await h.localStore.list(keys.balancedSandboxes)).map((kv) => kv.key),
    ['sb-client', 'sb-web1', 'sb-web2'].map(keys.balancedSandbox),
  );
});

test('a failed apply is logged and tried again a second later, replacing that sandbox\'s whole table', async (t) => {
  const h = harness(t);
  await write(h.localStore, ...FRONT_RECORDS);
  const balancer = await h.start();

  h.rules.failingIn.add(netns('sb-client')).add(netns('sb-web3'));
  const web3 = endpoint('ep-web3', FRONT, 'sb-web3', '10.0.0.11', { service: web.id });
  await write(h.localStore, sb(sandbox('sb-web3')));
  await balancer.reread('local', await write(h.localStore, ep(web3)));
  t.true(
    h.warnings.some((warning) => /load balancer: sandbox client: .*Operation not permitted \(trying again in 1 s\)/.test(warning)),
    h.warnings.join('\n'),
  );
  t.deepEqual(h.rules.of('sb-client'), [replaceScript(FRONT_TABLE)]);
  t.is((await h.localStore.get(keys.balancedSandbox('sb-client')))?.value, 'sb-client', 'the namespace may hold a table: it stays marked');
  t.is((await h.localStore.get(keys.balancedSandbox('sb-web3')))?.value, 'sb-web3', 'marked before its first apply, which failed');

  // Nothing else changes: the retry alone writes them.
  h.rules.failingIn.clear();
  const withWeb3 = vips({ '10.0.0.2': ['10.0.0.9', '10.0.0.10', '10.0.0.11'] });
  t.deepEqual(await scripts(h, balancer, 'sb-client', 2), [replaceScript(FRONT_TABLE), replaceScript(withWeb3)]);
  t.deepEqual(await scripts(h, balancer, 'sb-web3', 1), [replaceScript(withWeb3)]);
  t.is(h.rules.last('sb-web1'), changeScript(FRONT_TABLE, withWeb3), 'where no apply failed, only the change');
});

test('a watch event older than what reread applied does not undo it', async (t) => {
  const localStore = new TestStore();
  const h = harness(t, { localStore });
  await write(localStore, ...FRONT_RECORDS);
  const balancer = await h.start();

  localStore.lagging = true;
  const web3 = endpoint('ep-web3', FRONT, 'sb-web3', '10.0.0.11', { service: web.id });
  await write(localStore, sb(sandbox('sb-web3')));
  await write(localStore, ep(web3));
  await balancer.reread('local', await write(localStore, ep({ ...web3, pending: 'disconnect' })));
  t.deepEqual(h.rules.of('sb-client'), [replaceScript(FRONT_TABLE)], 'reread read the disconnect: web3 never entered the rotation');

  // The watch now reports web3's sandbox, web3 joined (older than what reread read), then the disconnect.
  await localStore.catchUp(() => actedOn(balancer));
  t.deepEqual(h.rules.of('sb-client'), [replaceScript(FRONT_TABLE)], 'the older event did not bring web3 back');
  t.deepEqual((await balancer.balancing(web.id))[0]?.tasks, ['10.0.0.9', '10.0.0.10']);
});

test('a deletion reread found is not undone by an older put the watch still reports', async (t) => {
  const localStore = new TestStore();
  const h = harness(t, { localStore });
  await write(localStore, ...FRONT_RECORDS);
  const balancer = await h.start();

  localStore.lagging = true;
  await write(localStore, svc({ ...web, labels: { tier: 'front' } }));
  await localStore.txn({ delete: [keys.service(web.id)] });
  await balancer.reread('local', [keys.service(web.id)]);
  const gone = [replaceScript(FRONT_TABLE), replaceScript(new Map())];
  t.deepEqual(h.rules.of('sb-client'), gone);

  await localStore.catchUp(() => actedOn(balancer));
  t.deepEqual(h.rules.of('sb-client'), gone, 'the relabelled service, older than its deletion, did not come back');
  t.deepEqual(await balancer.balancing(web.id), []);
});

test('a key whose deletion reread found is followed again once written anew (the watch reported the deletion first)', async (t) => {
  const h = harness(t);
  await write(h.localStore, ...FRONT_RECORDS);
  const balancer = await h.start();

  // The memory store's watch reports the deletion at once, before reread reads the key.
  await h.localStore.txn({ delete: [keys.service(web.id)] });
  await balancer.reread('local', [keys.service(web.id)]);
  t.is(h.rules.last('sb-client'), replaceScript(new Map()));

  await write(h.localStore, svc(web));
  t.is((await scripts(h, balancer, 'sb-client', 3))[2], replaceScript(FRONT_TABLE));
});

test('a key whose deletion reread found is followed again once written anew (the watch reported the deletion after)', async (t) => {
  const localStore = new TestStore();
  const h = harness(t, { localStore });
  await write(localStore, ...FRONT_RECORDS);
  const balancer = await h.start();

  localStore.lagging = true;
  await localStore.txn({ delete: [keys.service(web.id)] });
  await balancer.reread('local', [keys.service(web.id)]);
  await localStore.catchUp(() => actedOn(balancer));
  await write(localStore, svc(web));
  t.is((await scripts(h, balancer, 'sb-client', 3))[2], replaceScript(FRONT_TABLE));
});

// The watch forgets a deleted key's revision, except while a reread of the key is under way: a read answered
// before another host's deletion, and applied after the watch reported it, must not bring the record back.
test('a reread answered before a deletion the watch then reported does not bring the record back', async (t) => {
  const globalStore = new TestStore();
  const h = harness(t, { globalStore });
  const api = service('svc-api', [{ networkId: OVERLAY, virtualIp: '10.1.0.2/24' }], { scope: 'global' });
  await write(h.localStore, sb(sandbox('sb-api')), sb(sandbox('sb-client')));
  await write(globalStore, svc(api), ep(endpoint('ep-api', OVERLAY, 'sb-api', '10.1.0.6', { service: api.id })));
  await write(globalStore, ep(endpoint('ep-ov-client', OVERLAY, 'sb-client', '10.1.0.3')));
  const balancer = await h.start();
  t.deepEqual(h.rules.of('sb-client'), [replaceScript(vips({ '10.1.0.2': ['10.1.0.6'] }))]);

  // This host rereads the service it just made while another host removes it.
  globalStore.slowReads = true;
  const rereading = balancer.reread('global', [keys.service(api.id)]);
  await globalStore.txn({ delete: [keys.service(api.id)] });
  await scripts(h, balancer, 'sb-client', 2);
  globalStore.answerReads();
  await rereading;
  t.deepEqual(await balancer.balancing(api.id), []);
  t.is(h.rules.last('sb-client'), replaceScript(new Map()));
});

test('a mark the local store refused is written by the next write, so a later start still finds the table', async (t) => {
  const localStore = new TestStore();
  const h = harness(t, { localStore });
  await write(localStore, ...FRONT_RECORDS.filter((item) => item.kind !== 'service'));
  const balancer = await h.start();
  t.deepEqual([...h.rules.scripts.keys()], [], 'no service yet: no table');

  localStore.refusingMarks = true;
  await balancer.reread('local', await write(localStore, svc(web)));
  t.true(h.warnings.some((warning) => /sandbox client: database is locked/.test(warning)), h.warnings.join('\n'));
  t.deepEqual(h.rules.of('sb-client'), [], 'no table without its mark');

  localStore.refusingMarks = false;
  const web3 = endpoint('ep-web3', FRONT, 'sb-web3', '10.0.0.11', { service: web.id });
  await write(localStore, sb(sandbox('sb-web3')));
  await balancer.reread('local', await write(localStore, ep(web3)));
  const withWeb3 = vips({ '10.0.0.2': ['10.0.0.9', '10.0.0.10', '10.0.0.11'] });
  t.deepEqual(h.rules.of('sb-client'), [replaceScript(withWeb3)]);
  t.is((await localStore.get(keys.balancedSandbox('sb-client')))?.value, 'sb-client');

  // The service goes while no balancer runs; the next one deletes the client's table.
  await balancer.stop();
  await localStore.txn({ delete: [keys.service(web.id)] });
  await h.start();
  t.deepEqual(h.rules.of('sb-client'), [replaceScript(withWeb3), replaceScript(new Map())]);
});

test('a record that does not fit its schema is ignored with a warning; the others still count', async (t) => {
  const h = harness(t);
  await write(h.localStore, ...FRONT_RECORDS);
  const badEndpoint = keys.endpoint(FRONT, 'ep-bad');
  const badService = keys.service('svc-bad');
  await h.localStore.txn({
    put: [
      // A task with its address as a number, and a service that is not JSON.
      { key: badEndpoint, value: JSON.stringify({ ...endpoint('ep-bad', FRONT, 'sb-web1', '10.0.0.50', { service: web.id }), ipv4Address: 167772210 }) },
      { key: badService, value: '{"id": "svc-bad", "networks": [' },
    ],
  });
  const balancer = await h.start();

  t.deepEqual(h.rules.of('sb-client'), [replaceScript(FRONT_TABLE)]);
  t.true(h.warnings.some((warning) => warning.startsWith(`load balancer: ignoring bad record ${badEndpoint}: `) && /ipv4Address/.test(warning)), h.warnings.join('\n'));
  t.true(h.warnings.some((warning) => warning.startsWith(`load balancer: ignoring bad record ${badService}: `) && /not JSON/.test(warning)), h.warnings.join('\n'));
  t.is(h.warnings.length, 2);

  // Through reread too.
  const badSandbox = keys.sandbox('sb-bad');
  await h.localStore.txn({ put: [{ key: badSandbox, value: JSON.stringify({ id: 'sb-bad', name: 'bad', netnsPath: 7 }) }] });
  await balancer.reread('local', [badSandbox]);
  t.true(h.warnings.some((warning) => warning.startsWith(`load balancer: ignoring bad record ${badSandbox}: `)), h.warnings.join('\n'));
  t.deepEqual(h.rules.of('sb-bad'), []);
});

test('a record whose address is a string but no IPv4 address is ignored with a warning: nothing of it reaches a script', async (t) => {
  const h = harness(t);
  await write(h.localStore, ...FRONT_RECORDS);
  // As a record written straight into the cluster store could say: nft commands after the address.
  const injected = '10.0.0.50\nadd table ip injected';
  const badEndpoint = endpoint('ep-bad', FRONT, 'sb-web1', '10.0.0.50', { service: web.id, ipv4Address: injected });
  const badService = service('svc-bad', [{ networkId: FRONT, virtualIp: '10.0.0.60 : goto nat_output' }]);
  const [endpointKey, serviceKey] = await write(h.localStore, ep(badEndpoint), svc(badService));
  const balancer = await h.start();

  t.deepEqual(h.rules.of('sb-client'), [replaceScript(FRONT_TABLE)], 'the table holds the good records only');
  t.true(h.warnings.some((warning) => warning.startsWith(`load balancer: ignoring bad record ${endpointKey}: `) && /ipv4Address/.test(warning)), h.warnings.join('\n'));
  t.true(h.warnings.some((warning) => warning.startsWith(`load balancer: ignoring bad record ${serviceKey}: `) && /virtualIp/.test(warning)), h.warnings.join('\n'));
  t.is(h.warnings.length, 2);

  // Through reread too, and a later change still reaches every sandbox.
  const web3 = endpoint('ep-web3', FRONT, 'sb-web3', '10.0.0.11', { service: web.id });
  await write(h.localStore, sb(sandbox('sb-web3')));
  await balancer.reread('local', await write(h.localStore, ep({ ...web3, ipv4Address: '10.0.0.11 }' }), ep(endpoint('ep-web4', FRONT, 'sb-web3', '10.0.0.12'))));
  t.is(h.warnings.length, 3);
  await balancer.reread('local', await write(h.localStore, ep(web3)));
  t.deepEqual(h.rules.last('sb-client'), changeScript(FRONT_TABLE, vips({ '10.0.0.2': ['10.0.0.9', '10.0.0.10', '10.0.0.11'] })));
  for (const script of [...h.rules.scripts.values()].flat()) t.false(/injected|goto nat_output|10\.0\.0\.(50|60)/.test(script), script);
});

test('sandboxes and networks that are gone leave nothing in the balancer’s indexes (a long-lived daemon sees many come and go)', async (t) => {
  const h = harness(t);
  await write(h.localStore, ...FRONT_RECORDS);
  const balancer = await h.start();
  // The indexes are private; their size is what grows with every sandbox a daemon ever saw.
  const indexes = balancer as unknown as { endpointsOfSandbox: Map<string, Set<string>>; endpointsOfNetwork: Map<string, Set<string>> };
  const before = { sandboxes: indexes.endpointsOfSandbox.size, networks: indexes.endpointsOfNetwork.size };

  for (let i = 0; i < 20; i++) {
    const task = endpoint(`ep-t${i}`, i % 2 === 0 ? FRONT : `net-${i}`, `sb-t${i}`, `10.0.0.${100 + i}`, { service: web.id });
    await balancer.reread('local', await write(h.localStore, sb(sandbox(`sb-t${i}`)), ep(task)));
    await h.localStore.txn({ delete: [keys.endpoint(task.networkId, task.id), keys.sandbox(task.sandboxId ?? '')] });
    await balancer.reread('local', [keys.endpoint(task.networkId, task.id), keys.sandbox(task.sandboxId ?? '')]);
  }

  t.deepEqual({ sandboxes: indexes.endpointsOfSandbox.size, networks: indexes.endpointsOfNetwork.size }, before);
  t.deepEqual(h.rules.last('sb-client'), changeScript(vips({ '10.0.0.2': ['10.0.0.9', '10.0.0.10', '10.0.0.118'] }), FRONT_TABLE));
});

test('endpoints of a dnsrr service give no rules', async (t) => {
  const h = harness(t);
  const dnsrr = service('svc-dnsrr', [{ networkId: FRONT }], { endpointMode: 'dnsrr' });
  await write(
    h.localStore,
    sb(sandbox('sb-db1')),
    sb(sandbox('sb-client')),
    svc(dnsrr),
    ep(endpoint('ep-db1', FRONT, 'sb-db1', '10.0.0.20', { service: dnsrr.id })),
    ep(client),
  );
  const balancer = await h.start();

  t.deepEqual([...h.rules.scripts.keys()], []);
  t.deepEqual(await h.localStore.list(keys.balancedSandboxes), []);
  t.deepEqual(await balancer.balancing(dnsrr.id), []);

  // A vip service beside it on the same network balances its own tasks only.
  await balancer.reread('local', await write(h.localStore, sb(sandbox('sb-web1')), ep(web1), svc(web)));
  t.deepEqual(h.rules.of('sb-client'), [replaceScript(vips({ '10.0.0.2': ['10.0.0.10'] }))]);
});

test('a sandbox on two networks, each with a service, gets both VIPs in one table', async (t) => {
  const h = harness(t);
  const db = service('svc-db', [{ networkId: BACK, virtualIp: '10.2.0.2/24' }]);
  await write(
    h.localStore,
    ...FRONT_RECORDS,
    sb(sandbox('sb-db1')),
    svc(db),
    ep(endpoint('ep-db1', BACK, 'sb-db1', '10.2.0.7', { service: db.id })),
    ep(endpoint('ep-client-back', BACK, 'sb-client', '10.2.0.3', { ifName: 'eth1' })),
  );
  const balancer = await h.start();

  t.deepEqual(h.rules.of('sb-client'), [replaceScript(vips({ '10.0.0.2': ['10.0.0.9', '10.0.0.10'], '10.2.0.2': ['10.2.0.7'] }))]);
  t.deepEqual(h.rules.of('sb-web1'), [replaceScript(FRONT_TABLE)], 'a sandbox on one of them gets that one only');
  t.deepEqual(h.rules.of('sb-db1'), [replaceScript(vips({ '10.2.0.2': ['10.2.0.7'] }))]);

  // Leaving one network takes that network's VIP away, and only that.
  await balancer.reread('local', await write(h.localStore, ep(endpoint('ep-client-back', BACK, 'sb-client', '10.2.0.3', { ifName: 'eth1', pending: 'leave' }))));
  t.is(h.rules.last('sb-client'), changeScript(vips({ '10.0.0.2': ['10.0.0.9', '10.0.0.10'], '10.2.0.2': ['10.2.0.7'] }), FRONT_TABLE));
});

test('after stop, neither reread nor a store change writes rules', async (t) => {
  const h = harness(t);
  await write(h.localStore, ...FRONT_RECORDS);
  const balancer = await h.start();
  await balancer.stop();

  const keysWritten = await write(h.localStore, ep({ ...web1, pending: 'disconnect' }));
  await balancer.reread('local', keysWritten);
  await actedOn(balancer);
  t.deepEqual(h.rules.of('sb-client'), [replaceScript(FRONT_TABLE)]);
  await t.notThrowsAsync(balancer.stop(), 'stopping again is harmless');
});
