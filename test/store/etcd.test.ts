import { spawn } from 'node:child_process';
import { type AddressInfo, type Socket, connect, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { Etcd3 } from 'etcd3';
import { Conflict, InvalidArgument, Unavailable } from '../../src/errors.js';
import { EtcdStore } from '../../src/store/etcd.js';
import type { EtcdStoreOptions } from '../../src/store/etcd.js';
import type { WatchEvent } from '../../src/store/types.js';
import { startEtcd } from '../helpers/etcd.js';
import { addNetns, inNetns, removeNetns, run, uniqueName } from '../helpers/kernel.js';
import type { RunningEtcd } from '../helpers/etcd.js';
import { collect, storeCompliance } from './compliance.js';
import { levelLogger } from '../../src/log.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const etcdModule = fileURLToPath(new URL('../../src/store/etcd.ts', import.meta.url));

let shared: RunningEtcd | undefined;
let prefixes = 0;

test.before(async () => {
  shared = await startEtcd();
});

test.after.always(async () => {
  await shared?.stop();
});

function sharedUrl(): string {
  if (shared === undefined) throw new Error('etcd did not start');
  return shared.url;
}

/** A prefix no other test uses, so tests sharing one etcd never see each other's keys. */
function uniquePrefix(): string {
  prefixes += 1;
  return `/netctl-test/${process.pid}/${prefixes}/`;
}

async function openStore(t: ExecutionContext, url: string, options: EtcdStoreOptions): Promise<EtcdStore> {
  const store = await EtcdStore.open(url, { ...options, logger: levelLogger((_level, message) => t.log(message)) });
  t.teardown(() => store.close());
  return store;
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  return condition();
}

/**
 * etcd's revision is cluster-wide and several compliance tests assert that
 * revisions advance by exactly one per txn, so they take the shared etcd in
 * turns. The other tests of this file are serial and run before them.
 */
let complianceTurn: Promise<void> = Promise.resolve();

storeCompliance('EtcdStore', async () => {
  const previous = complianceTurn;
  let release = (): void => undefined;
  complianceTurn = new Promise((resolve) => (release = resolve));
  await previous;
  try {
    const store = await EtcdStore.open(sharedUrl(), { prefix: uniquePrefix() });
    return {
      store,
      cleanup: async () => {
        try {
          await store.close();
        } finally {
          release();
        }
      },
    };
  } catch (err) {
    release();
    throw err;
  }
});

test.serial('EtcdStore: keys are stored under the prefix, which results do not show', async (t) => {
  const prefix = uniquePrefix();
  const store = await openStore(t, sharedUrl(), { prefix });
  const put = await store.txn({ put: [{ key: 'net/a', value: 'v' }] });
  t.deepEqual({ ...(await store.get('net/a')) }, { key: 'net/a', value: 'v', modRevision: put.revision });

  const raw = new Etcd3({ hosts: sharedUrl().replace('etcd://', 'http://') });
  t.teardown(() => raw.close());
  t.is(await raw.get(`${prefix}net/a`).string(), 'v');
  t.is(await raw.get('net/a').string(), null);
});

test.serial('EtcdStore: an ephemeral key is visible to others and disappears at once when its owner closes', async (t) => {
  const prefix = uniquePrefix();
  const owner = await openStore(t, sharedUrl(), { prefix });
  const observer = await openStore(t, sharedUrl(), { prefix });
  const events: WatchEvent[] = [];
  await observer.watch('hosts/', (event) => events.push(event));

  await owner.txn({ put: [{ key: 'hosts/a', value: 'up', ephemeral: true }, { key: 'hosts/config', value: 'kept' }] });
  t.is((await observer.get('hosts/a'))?.value, 'up');
  await owner.close();
  t.is(await observer.get('hosts/a'), undefined, 'gone as soon as close resolves');
  t.is((await observer.get('hosts/config'))?.value, 'kept', 'a plain key stays');
  const deletes = (await collect(events, 3)).filter((event) => event.type === 'delete');
  t.deepEqual(
    deletes.map((event) => (event.type === 'delete' ? event.key : '')),
    ['hosts/a'],
  );
});

test.serial('EtcdStore: the ephemeral key of a process killed with SIGKILL expires within the lease TTL', async (t) => {
  const prefix = uniquePrefix();
  const observer = await openStore(t, sharedUrl(), { prefix });
  const deleted: { key: string; at: number }[] = [];
  await observer.watch('hosts/', (event) => {
    if (event.type === 'delete') deleted.push({ key: event.key, at: Date.now() });
  });

  const ttlSeconds = 2;
  const script = `
    const { EtcdStore } = await import(${JSON.stringify(etcdModule)});
    const store = await EtcdStore.open(${JSON.stringify(sharedUrl())}, { prefix: ${JSON.stringify(prefix)}, leaseTtlSeconds: ${ttlSeconds} });
    await store.txn({ put: [{ key: 'hosts/child', value: String(process.pid), ephemeral: true }] });
    process.stdout.write('ready\\n');
    setInterval(() => undefined, 1000);
  `;
  const child = spawn(process.execPath, ['--import=tsx', '--input-type=module', '-e', script], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', () => resolve());
    child.on('exit', (code) => reject(new Error(`child exited with ${code}: ${stderr}`)));
  });

  t.is((await observer.get('hosts/child'))?.value, String(child.pid));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  child.kill('SIGKILL');
  await exited;
  const killedAt = Date.now();
  t.is((await observer.get('hosts/child'))?.value, String(child.pid), 'the key outlives its process until the lease expires');

  t.true(await waitFor(() => deleted.length > 0, (ttlSeconds + 4) * 1000), 'the watch saw the key go');
  const seconds = ((deleted[0]?.at ?? Infinity) - killedAt) / 1000;
  t.log(`key deleted ${seconds.toFixed(2)} s after kill -9 (lease TTL ${ttlSeconds} s)`);
  t.is(deleted[0]?.key, 'hosts/child');
  t.true(seconds <= ttlSeconds + 2, `deleted after ${seconds} s`);
  t.is(await observer.get('hosts/child'), undefined);
});

test.serial('EtcdStore: when its lease is lost, a client announces its ephemeral keys again under a new one', async (t) => {
  const prefix = uniquePrefix();
  const logs: string[] = [];
  const owner = await EtcdStore.open(sharedUrl(), { prefix, leaseTtlSeconds: 3, logger: levelLogger((_level, message) => logs.push(message)) });
  t.teardown(() => owner.close());
  const observer = await openStore(t, sharedUrl(), { prefix });
  await owner.txn({ put: [{ key: 'hosts/a', value: 'a', ephemeral: true }, { key: 'hosts/b', value: 'b', ephemeral: true }] });
  // A key the owner deleted is no longer its to announce.
  await owner.txn({ delete: ['hosts/b'] });
  const events: WatchEvent[] = [];
  await observer.watch('hosts/', (event) => events.push(event));

  // Revoke the lease behind the client's back, as etcd does when a partitioned client's lease expires.
  const raw = new Etcd3({ hosts: sharedUrl().replace('etcd://', 'http://') });
  t.teardown(() => raw.close());
  const stored = await raw.get(`${prefix}hosts/a`).exec();
  const leaseId = stored.kvs[0]?.lease;
  t.truthy(leaseId);
  await raw.leaseClient.leaseRevoke({ ID: leaseId ?? '0' });

  const seen = await collect(events, 2, 10_000);
  t.deepEqual(
    seen.map((event) => (event.type === 'put' ? ['put', event.kv.key, event.kv.value] : ['delete', event.key])),
    [
      ['delete', 'hosts/a'],
      ['put', 'hosts/a', 'a'],
    ],
  );
  const again = await raw.get(`${prefix}hosts/a`).exec();
  t.not(again.kvs[0]?.lease, leaseId, 'put back under a new lease');
  t.true(logs.some((line) => line.includes('lease lost')), logs.join('\n'));

  // The new lease is the one close() revokes.
  await owner.close();
  t.is(await observer.get('hosts/a'), undefined);
});

test.serial('EtcdStore: concurrent compare-and-swap increments from two clients lose no update', async (t) => {
  const prefix = uniquePrefix();
  const stores = [await openStore(t, sharedUrl(), { prefix }), await openStore(t, sharedUrl(), { prefix })];
  const perClient = 50;
  const retries = await Promise.all(
    stores.map(async (store) => {
      let conflicts = 0;
      for (let done = 0; done < perClient; ) {
        const current = await store.get('counter');
        const result = await store.txn({
          compare: [{ key: 'counter', modRevision: current?.modRevision ?? 0 }],
          put: [{ key: 'counter', value: String(Number(current?.value ?? '0') + 1) }],
        });
        if (result.succeeded) done += 1;
        else conflicts += 1;
      }
      return conflicts;
    }),
  );
  t.is((await stores[0]?.get('counter'))?.value, String(2 * perClient));
  t.log(`compare-and-swap retries per client: ${retries.join(', ')}`);
});

test.serial('EtcdStore: a watch from a revision replays what happened after it', async (t) => {
  const store = await openStore(t, sharedUrl(), { prefix: uniquePrefix() });
  const first = await store.txn({ put: [{ key: 'w/a', value: '1' }] });
  const second = await store.txn({ put: [{ key: 'w/a', value: '2' }] });
  const third = await store.txn({ delete: ['w/a'] });
  const events: WatchEvent[] = [];
  await store.watch('w/', (event) => events.push(event), { fromRevision: first.revision });
  t.deepEqual(await collect(events, 2), [
    { type: 'put', kv: { key: 'w/a', value: '2', modRevision: second.revision } },
    { type: 'delete', key: 'w/a', modRevision: third.revision },
  ]);
});

test.serial('EtcdStore: across an etcd restart calls fail within the bound, then work, and the watch goes on', async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const callTimeoutMs = 2000;
  const store = await openStore(t, etcd.url, { prefix: uniquePrefix(), callTimeoutMs });
  const events: WatchEvent[] = [];
  await store.watch('w/', (event) => events.push(event));
  await store.txn({ put: [{ key: 'w/before', value: '1' }, { key: 'host', value: 'me', ephemeral: true }] });
  t.is((await collect(events, 1)).length, 1);

  await etcd.kill();
  for (const [name, call] of [
    ['get', () => store.get('w/before')],
    ['list', () => store.list('w/')],
    ['txn', () => store.txn({ put: [{ key: 'w/during', value: 'x' }] })],
  ] as const) {
    const started = Date.now();
    const err = await t.throwsAsync<Unavailable>(call(), { instanceOf: Unavailable }, `${name} during the outage`);
    const elapsed = Date.now() - started;
    t.log(`${name} rejected after ${elapsed} ms: ${err?.message}`);
    t.true(elapsed <= callTimeoutMs + 1000, `${name} took ${elapsed} ms`);
    t.regex(err?.message ?? '', new RegExp(etcd.url.replaceAll('.', '\\.')));
  }

  await etcd.restart();
  t.is((await store.get('w/before'))?.value, '1', 'reads work again');
  const after = await store.txn({ put: [{ key: 'w/after', value: '2' }] });
  t.true(after.succeeded);
  const seen = await collect(events, 2, 10_000);
  t.deepEqual(seen.at(-1), { type: 'put', kv: { key: 'w/after', value: '2', modRevision: after.revision } });
  t.is(seen.length, 2, 'nothing was written during the outage');
  t.is((await store.get('host'))?.value, 'me', 'the ephemeral key survived: etcd keeps leases across a restart');
});

/** A TCP relay to etcd that a test can cut and restore, so one client falls behind while etcd stays up. */
async function cuttableRelay(t: ExecutionContext, target: string): Promise<{ url: string; cut(): Promise<void>; restore(): Promise<void> }> {
  const { hostname, port } = new URL(target.replace(/^etcd:/, 'http:'));
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(port), hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  const listen = (at: number) => new Promise<void>((resolve) => server.listen(at, '127.0.0.1', resolve));
  await listen(0);
  const relayPort = (server.address() as AddressInfo).port;
  const cut = async (): Promise<void> => {
    const closed = new Promise((resolve) => server.close(resolve));
    for (const socket of sockets) socket.destroy();
    await closed;
  };
  t.teardown(() => (server.listening ? cut() : undefined));
  return { url: `etcd://127.0.0.1:${relayPort}`, cut, restore: () => listen(relayPort) };
}

test.serial('EtcdStore: compaction keeps one interval of history; a watch from before it is refused as compacted', async (t) => {
  const prefix = uniquePrefix();
  const store = await openStore(t, sharedUrl(), { prefix, compactIntervalMs: 3_600_000 });
  const first = await store.txn({ put: [{ key: 'c/a', value: '1' }] });
  await store.compactNow();
  await store.txn({ put: [{ key: 'c/a', value: '2' }] });
  // The first step only remembered where the history stood; a watch from then still replays.
  const events: WatchEvent[] = [];
  const watch = await store.watch('c/', (event) => events.push(event), { fromRevision: first.revision });
  t.is((await collect(events, 1)).length, 1);
  await watch.cancel();
  await store.txn({ put: [{ key: 'c/a', value: '3' }] });
  // Compacts to where the previous step stood, then to the newest revision.
  await store.compactNow();
  await store.compactNow();
  await t.throwsAsync(store.watch('c/', () => undefined, { fromRevision: first.revision }), { instanceOf: Conflict, message: /compacted/ });
  t.deepEqual((await store.get('c/a'))?.value, '3', 'the current values stay');
});

test.serial('EtcdStore: a watch that falls behind a compaction catches up: puts for what changed, deletes for what went', async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const relay = await cuttableRelay(t, etcd.url);
  const prefix = uniquePrefix();
  const writer = await openStore(t, etcd.url, { prefix, compactIntervalMs: 3_600_000 });
  await writer.txn({ put: [{ key: 'p/old', value: '1' }, { key: 'p/kept', value: '1' }, { key: 'p/changed', value: '1' }] });
  const follower = await openStore(t, relay.url, { prefix, callTimeoutMs: 2000, compactIntervalMs: 0 });
  const view = new Map<string, string>();
  const events: WatchEvent[] = [];
  await follower.watch('p/', (event) => {
    events.push(event);
    if (event.type === 'put') view.set(event.kv.key, event.kv.value);
    else view.delete(event.key);
  });
  for (const kv of await follower.list('p/')) if (!view.has(kv.key)) view.set(kv.key, kv.value);
  await writer.txn({ put: [{ key: 'p/seen', value: '1' }] });
  await collect(events, 1);

  await relay.cut();
  await writer.txn({ delete: ['p/old', 'p/seen'], put: [{ key: 'p/changed', value: '2' }, { key: 'p/new', value: '1' }] });
  for (let i = 0; i < 20; i++) await writer.txn({ put: [{ key: 'p/new', value: String(i) }] });
  await writer.compactNow();
  await writer.compactNow();
  await relay.restore();

  const expected = new Map((await writer.list('p/')).map((kv) => [kv.key, kv.value]));
  t.true(await waitFor(() => JSON.stringify([...view].sort()) === JSON.stringify([...expected].sort()), 15_000), JSON.stringify([...view]));
  const deleted = events.filter((event) => event.type === 'delete').map((event) => (event.type === 'delete' ? event.key : ''));
  t.deepEqual(deleted.sort(), ['p/old', 'p/seen'], 'a key there before the watch began is deleted too');
  // After the catch-up the watch follows live changes again.
  await writer.txn({ put: [{ key: 'p/later', value: '1' }] });
  t.true(await waitFor(() => view.get('p/later') === '1', 10_000));
});

test.serial('EtcdStore: open rejects with Unavailable naming the URL when nobody answers', async (t) => {
  // The address of an etcd that has just stopped: nothing listens there now.
  const etcd = await startEtcd();
  const url = etcd.url;
  await etcd.stop();
  const started = Date.now();
  const err = await t.throwsAsync(EtcdStore.open(url, { dialTimeoutMs: 1000 }), { instanceOf: Unavailable });
  const elapsed = Date.now() - started;
  t.true(elapsed < 3000, `open gave up after ${elapsed} ms`);
  t.true(err?.message.startsWith(`cannot reach etcd at ${url}: `), err?.message);
  t.is(err?.code, 'Unavailable');
});

test.serial('EtcdStore: open rejects a malformed URL with InvalidArgument', async (t) => {
  for (const url of ['', 'etcd://', 'redis://127.0.0.1:6379', 'etcd://127.0.0.1:99999', 'http://a:1/path', 'etcd://a:1,,b:2']) {
    await t.throwsAsync(EtcdStore.open(url), { instanceOf: InvalidArgument }, url);
  }
});

test.serial('EtcdStore: accepts http:// URLs and several members, skipping one that is down', async (t) => {
  const down = await startEtcd();
  const deadMember = down.url.replace('etcd://', '');
  await down.stop();
  const live = sharedUrl().replace('etcd://', '');
  const store = await openStore(t, `http://${deadMember},${live}`, { prefix: uniquePrefix(), callTimeoutMs: 3000 });
  for (let i = 0; i < 5; i++) {
    const result = await store.txn({ put: [{ key: `k${i}`, value: String(i) }] });
    t.true(result.succeeded);
    t.is((await store.get(`k${i}`))?.value, String(i));
  }
});

test.serial('startEtcd: runs etcd inside a network namespace, on an underlay address there', async (t) => {
  const name = uniqueName('etcd');
  t.teardown(() => removeNetns(name));
  const netnsPath = await addNetns(name);
  const address = await run('ip', ['-n', name, 'addr', 'add', '198.18.0.1/24', 'dev', 'lo']);
  t.is(address.code, 0, address.stderr);
  const etcd = await startEtcd({ host: '198.18.0.1', netnsPath });
  t.teardown(() => etcd.stop());
  t.is(etcd.url, 'etcd://198.18.0.1:2379');

  const endpoint = `--endpoints=${etcd.url.replace('etcd://', 'http://')}`;
  t.is((await inNetns(netnsPath, 'etcdctl', [endpoint, 'put', 'k', 'v'])).code, 0);
  t.is((await inNetns(netnsPath, 'etcdctl', [endpoint, 'get', '--print-value-only', 'k'])).stdout.trim(), 'v');
  await etcd.restart();
  t.is((await inNetns(netnsPath, 'etcdctl', [endpoint, 'get', '--print-value-only', 'k'])).stdout.trim(), 'v');
});
