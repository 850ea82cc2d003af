/**
 * Services balance: connections to a service's virtual IP reach its tasks,
 * as a user checks it. Tasks are small servers in their sandboxes that
 * answer, on TCP and UDP port 8080, with their own name; a client in another
 * sandbox makes many connections to VIP:8080 and counts who answered. On an
 * overlay across three simulated hosts (tasks on two of them, the client on
 * the third, which learns everything through etcd) and on one host's bridge.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { type Cluster, makeCluster, sandboxOn, type SimHost } from '../helpers/cluster.js';
import { allAnsweredBy, balanced, type ClientOptions, connectionStream, pinnedFlow, refused, runClient, Servers, show, tallyOf } from '../helpers/conn-tally.js';
import { NETCTL_CLI, type RunningDaemon, startDaemon } from '../helpers/daemon.js';
import { dig, digUntil } from '../helpers/dig.js';
import { addNetns, inNetns, nftRuleset, removeNetns, run, uniqueName } from '../helpers/kernel.js';
import { until } from '../helpers/wait.js';

const nsPath = (name: string) => `/var/run/netns/${name}`;
const ipOf = (cidr: string) => cidr.split('/')[0] ?? '';
const PORT = 8080;

/** `count` attempts from the sandbox to address:8080. */
const connections = (sandbox: string, proto: 'tcp' | 'udp', address: string, count: number, options: Omit<ClientOptions, 'port'> = {}) =>
  runClient(nsPath(sandbox), proto, address, count, { port: PORT, ...options });

interface Task {
  readonly name: string;
  readonly address: string;
}

interface ServiceJson {
  Endpoint: { VirtualIPs: { NetworkID: string; Addr: string }[] };
  LoadBalancer: { NetworkID: string; VirtualIP: string; Tasks: string[] }[];
}

async function inspectService(cluster: Cluster, host: SimHost, service: string): Promise<ServiceJson> {
  return (JSON.parse(await cluster.ok(host, 'service', 'inspect', service)) as ServiceJson[])[0]!;
}

/** The task addresses `host` balances the service's (only) VIP to, sorted. */
async function balancedTo(cluster: Cluster, host: SimHost, service: string): Promise<string[]> {
  const balancing = (await inspectService(cluster, host, service)).LoadBalancer;
  if (balancing.length !== 1) throw new Error(`host${host.index}: ${service} has ${balancing.length} LoadBalancer entries`);
  return [...(balancing[0]?.Tasks ?? [])].sort();
}

/** Waits until `host` balances the service to exactly `tasks`; resolves with how long that took. */
async function waitBalancedTo(cluster: Cluster, host: SimHost, service: string, tasks: readonly Task[], timeoutMs = 15_000): Promise<number> {
  const want = JSON.stringify(tasks.map((task) => task.address).sort());
  let last: string[] = [];
  try {
    const { ms } = await until(
      `host${host.index} to balance ${service} to ${want}`,
      async () => {
        last = await balancedTo(cluster, host, service);
        return JSON.stringify(last) === want ? true : undefined;
      },
      timeoutMs,
    );
    return ms;
  } catch (err) {
    throw new Error(`${(err as Error).message}; it balances to ${JSON.stringify(last)}`);
  }
}

/** Whether the namespace holds the load balancer's table. */
async function holdsServicesTable(sandbox: string): Promise<boolean> {
  return /^table ip netctl_services \{/m.test(await nftRuleset(nsPath(sandbox)));
}

/** Makes a sandbox on `host`, connects it to `network` as a task of `service` and starts its server. */
async function taskOn(cluster: Cluster, servers: Servers, host: SimHost, network: string, service: string, base: string): Promise<Task> {
  const task = await sandboxOn(cluster, host, network, base, { service });
  await servers.start(task.name);
  return task;
}

interface OverlaySetup {
  readonly cluster: Cluster;
  readonly hosts: [SimHost, SimHost, SimHost];
  readonly servers: Servers;
  readonly vip: string;
  /** web's tasks: two on host 1, one on host 2. */
  readonly tasks: [Task, Task, Task];
  /** A plain sandbox on host 3 (and one on host 1). */
  readonly client3: Task;
  readonly client1: Task;
  /** Every sandbox of each host, by host index. */
  readonly sandboxesOf: Map<number, string[]>;
}

/**
 * Three hosts, one overlay network `ov` on `subnet`, service `web` (vip)
 * with tasks w1, w2 on host 1 and w3 on host 2, plain sandboxes on hosts 1
 * and 3; resolves once host 3 balances web to the three tasks.
 */
async function overlaySetup(t: ExecutionContext, subnet: string): Promise<OverlaySetup> {
  const cluster = await makeCluster(3);
  const servers = new Servers(PORT, 'name');
  t.teardown(async () => {
    await servers.killAll();
    await cluster.destroy();
  });
  const hosts = cluster.hosts as [SimHost, SimHost, SimHost];
  const [h1, h2, h3] = hosts;
  for (const host of hosts) await cluster.startDaemon(host);
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '--subnet', subnet, 'ov');
  await cluster.ok(h1, 'service', 'create', '--network', 'ov', 'web');
  const vip = ipOf((await inspectService(cluster, h1, 'web')).Endpoint.VirtualIPs[0]?.Addr ?? '');
  const tasks: [Task, Task, Task] = [
    await taskOn(cluster, servers, h1, 'ov', 'web', 'w1'),
    await taskOn(cluster, servers, h1, 'ov', 'web', 'w2'),
    await taskOn(cluster, servers, h2, 'ov', 'web', 'w3'),
  ];
  const client1 = await sandboxOn(cluster, h1, 'ov', 'c1');
  const client3 = await sandboxOn(cluster, h3, 'ov', 'c3');
  const sandboxesOf = new Map([
    [1, [tasks[0].name, tasks[1].name, client1.name]],
    [2, [tasks[2].name]],
    [3, [client3.name]],
  ]);
  t.false(tasks.some((task) => task.address === vip), 'no task got the VIP');
  // Host 3 learns the service and the tasks through etcd.
  const ms = await waitBalancedTo(cluster, h3, 'web', tasks);
  t.log(`host 3 balanced web to its 3 tasks ${ms.toFixed(0)} ms after the last connect`);
  return { cluster, hosts, servers, vip, tasks, client1, client3, sandboxesOf };
}

test.serial(
  'overlay, 3 hosts: a VIP balances TCP and UDP from host 3 over tasks on hosts 1 and 2; DNS gives the VIP and the tasks; dnsrr has no VIP; service rm leaves no rules on any host',
  async (t) => {
    const { cluster, hosts, servers, vip, tasks, client3, sandboxesOf } = await overlaySetup(t, '10.92.0.0/24');
    const [h1, h2, h3] = hosts;

    const tcp = await connections(client3.name, 'tcp', vip, 300);
    t.log(`300 TCP connections from host 3: ${show(tcp)}`);
    balanced(t, tcp, 300, tasks, 0.2, 'TCP from host 3');

    const udp = await connections(client3.name, 'udp', vip, 30);
    t.log(`30 UDP datagrams from host 3, each from a fresh socket: ${show(udp)}`);
    allAnsweredBy(t, udp, 30, tasks, 'UDP from host 3');
    t.true(tasks.filter((task) => (udp.counts.get(task.name) ?? 0) > 0).length > 1, `UDP reached more than one task: ${show(udp)}`);

    t.deepEqual(await digUntil(client3.name, [vip], 15_000, 'web'), [vip], 'web resolves to its VIP');
    const taskAddresses = tasks.map((task) => task.address).sort();
    t.deepEqual(await digUntil(client3.name, taskAddresses, 15_000, 'tasks.web'), taskAddresses, 'tasks.web gives the 3 tasks');
    const web = await inspectService(cluster, h3, 'web');
    t.deepEqual(web.LoadBalancer.map((lb) => lb.VirtualIP), [vip]);

    // A dnsrr service beside it: names only.
    await cluster.ok(h1, 'service', 'create', '--network', 'ov', '--endpoint-mode', 'dnsrr', 'db');
    const db = [await taskOn(cluster, servers, h1, 'ov', 'db', 'd1'), await taskOn(cluster, servers, h2, 'ov', 'db', 'd2')];
    sandboxesOf.get(1)?.push(db[0]!.name);
    sandboxesOf.get(2)?.push(db[1]!.name);
    const dbAddresses = db.map((task) => task.address).sort();
    t.deepEqual(await digUntil(client3.name, dbAddresses, 15_000, 'db'), dbAddresses, 'db resolves to its 2 tasks');
    t.deepEqual(await dig(client3.name, 'tasks.db'), dbAddresses);
    const dbJson = await inspectService(cluster, h3, 'db');
    t.deepEqual(dbJson.Endpoint.VirtualIPs, [], 'a dnsrr service has no VIP');
    t.deepEqual(dbJson.LoadBalancer, [], 'nor anything to balance');
    t.true(tasks.every((task) => !db.some((d) => d.address === task.address)));
    // web still balances to its own 3 tasks only.
    t.deepEqual(await balancedTo(cluster, h3, 'web'), taskAddresses);
    const again = await connections(client3.name, 'tcp', vip, 30);
    allAnsweredBy(t, again, 30, tasks, 'TCP from host 3 with db beside web');

    // Every sandbox on a network with a service holds the rules; rm takes them away everywhere.
    for (const [index, names] of sandboxesOf) {
      for (const name of names) t.true(await holdsServicesTable(name), `host${index}: ${name} holds the netctl_services table before rm`);
    }
    await cluster.ok(h1, 'service', 'rm', 'web', 'db');
    for (const name of sandboxesOf.get(1) ?? []) t.false(await holdsServicesTable(name), `host1: ${name} holds no table once rm returned`);
    for (const host of [h2, h3]) {
      const names = sandboxesOf.get(host.index) ?? [];
      const { ms } = await until(
        `host${host.index}'s sandboxes to drop the table`,
        async () => ((await Promise.all(names.map(holdsServicesTable))).some(Boolean) ? undefined : true),
        15_000,
      );
      t.log(`host${host.index}'s sandboxes dropped the table ${ms.toFixed(0)} ms after rm returned on host 1`);
    }
    // A connection to the old VIP no longer reaches a task.
    const after = await connections(client3.name, 'tcp', vip, 1, { timeoutSeconds: 2, maxFailures: 1 });
    t.is(after.counts.size, 0, `nothing answers the old VIP: ${show(after)}`);
  },
);

test.serial(
  'overlay, 3 hosts: a disconnected task leaves the rotation on its own host when disconnect returns, and on host 3 once inspect says so; its open UDP flows move to live tasks',
  async (t) => {
    const { cluster, hosts, vip, tasks, client1, client3 } = await overlaySetup(t, '10.94.0.0/24');
    const [h1, , h3] = hosts;
    await waitBalancedTo(cluster, h1, 'web', tasks);
    // A UDP flow from each client that goes to the task about to leave: host 1's client picks one of host 1's tasks.
    const near = await pinnedFlow(nsPath(client1.name), vip, PORT, [tasks[0], tasks[1]], 21000);
    const gone = near.task;
    const far = await pinnedFlow(nsPath(client3.name), vip, PORT, [gone], 21100);
    const sticky = await connections(client3.name, 'udp', vip, 3, { sourcePort: far.sourcePort });
    allAnsweredBy(t, sticky, 3, [gone], 'a UDP flow stays on its task');
    const staying = tasks.filter((task) => task !== gone);

    // Connections one after the other from host 1's client, through the disconnect and 60 more after it returned.
    const stream = connectionStream(nsPath(client1.name), vip, PORT);
    t.teardown(() => stream.kill());
    await until('the stream to get going', () => (stream.attempts().length >= 20 ? true : undefined), 30_000);
    const disconnectAt = process.hrtime.bigint();
    await cluster.ok(h1, 'network', 'disconnect', 'ov', gone.name);
    const returnedAt = process.hrtime.bigint();
    const begunAfter = () => stream.attempts().filter((a) => a.start > returnedAt).length;
    await until('60 connections begun after the disconnect returned', () => (begunAfter() >= 60 ? true : undefined), 60_000);
    const attempts = await stream.stop();
    const during = tallyOf(attempts.filter((a) => a.start >= disconnectAt && a.start <= returnedAt));
    const local = tallyOf(attempts.filter((a) => a.start > returnedAt));
    t.log(`TCP connections from host 1 begun while the disconnect of ${gone.name} ran (${(Number(returnedAt - disconnectAt) / 1e6).toFixed(0)} ms): ${show(during)}`);
    t.log(`TCP connections from host 1 begun after it returned: ${show(local)}`);
    allAnsweredBy(t, local, local.attempts, staying, 'host 1 after the disconnect returned');
    // The task leaves the rotation before its interface goes: a connection begun meanwhile went to a task that answered.
    t.deepEqual(during.failures, [], `no connection failed while the disconnect ran: ${show(during)}`);
    const moved = await connections(client1.name, 'udp', vip, 1, { sourcePort: near.sourcePort });
    allAnsweredBy(t, moved, 1, staying, "host 1's UDP flow that went to the task");
    t.deepEqual(await balancedTo(cluster, h1, 'web'), staying.map((task) => task.address).sort(), 'host 1 inspect no longer lists it, without waiting');

    const ms = await waitBalancedTo(cluster, h3, 'web', staying);
    t.log(`host 3 dropped ${gone.name} ${ms.toFixed(0)} ms after the disconnect returned`);
    const remote = await connections(client3.name, 'tcp', vip, 60);
    t.log(`60 TCP connections from host 3: ${show(remote)}`);
    allAnsweredBy(t, remote, 60, staying, 'host 3 after its inspect dropped the task');
    const remoteMoved = await connections(client3.name, 'udp', vip, 1, { sourcePort: far.sourcePort });
    allAnsweredBy(t, remoteMoved, 1, staying, "host 3's UDP flow that went to the task");
  },
);

test.serial(
  "overlay, 3 hosts: kill -9 of host 2's daemon takes its task out of host 3's rotation within the lease TTL",
  async (t) => {
    const { cluster, hosts, vip, tasks, client3 } = await overlaySetup(t, '10.85.0.0/24');
    const [, h2, h3] = hosts;
    const before = await connections(client3.name, 'tcp', vip, 30);
    balanced(t, before, 30, tasks, 0.2, 'host 3 before the kill');

    const killedAt = performance.now();
    await cluster.stopDaemon(h2, 'SIGKILL');
    const live = [tasks[0], tasks[1]];
    // The lease is 10 s; the data-path probes should see it in about 1–2 s.
    await waitBalancedTo(cluster, h3, 'web', live, 10_000 + 5_000);
    const tookMs = performance.now() - killedAt;
    t.log(`host 3 took ${tasks[2].name} (host 2) out of its rotation ${tookMs.toFixed(0)} ms after the kill`);
    t.true(await inNetns(nsPath(tasks[2].name), 'true', []).then((r) => r.code === 0), "host 2's task sandbox is still there");

    const after = await connections(client3.name, 'tcp', vip, 60);
    t.log(`60 TCP connections from host 3 after the kill: ${show(after)}`);
    allAnsweredBy(t, after, 60, live, 'host 3 after the kill');
  },
);

test.serial(
  'one host, a bridge network: a VIP balances over 3 tasks; a VIP with no task refuses at once; service rm leaves no rules in any sandbox',
  async (t) => {
    const hostNs = uniqueName('lb');
    const hostNsPath = await addNetns(hostNs);
    const stateDir = await mkdtemp(join(tmpdir(), 'netctl-balancing-'));
    const socket = join(stateDir, 'netctl.sock');
    const sandboxes: string[] = [];
    const servers = new Servers(PORT, 'name');
    let daemon: RunningDaemon | undefined;
    t.teardown(async () => {
      await servers.killAll();
      await daemon?.stop('SIGKILL');
      for (const name of sandboxes) await removeNetns(name);
      await removeNetns(hostNs);
      await rm(stateDir, { recursive: true, force: true });
    });
    daemon = await startDaemon({ netnsPath: hostNsPath, stateDir, socket, args: ['--dns', '127.0.0.1'] });
    const netctl = async (...args: string[]) => {
      const result = await run(process.execPath, [NETCTL_CLI, '-H', `unix://${socket}`, ...args]);
      if (result.code !== 0) throw new Error(`netctl ${args.join(' ')}: ${result.stderr}`);
      return result.stdout;
    };
    const sandbox = async (base: string, ...connect: string[]): Promise<Task> => {
      const name = uniqueName(base);
      sandboxes.push(name);
      await netctl('sandbox', 'create', name);
      await netctl('network', 'connect', ...connect, 'front', name);
      const template = `{{range .Containers}}{{if eq .Name "${name}"}}{{.IPv4Address}}{{end}}{{end}}`;
      return { name, address: ipOf((await netctl('network', 'inspect', '-f', template, 'front')).trim()) };
    };
    const vipOf = async (service: string) =>
      ipOf((await netctl('service', 'inspect', '-f', '{{(index .Endpoint.VirtualIPs 0).Addr}}', service)).trim());

    await netctl('network', 'create', '--subnet', '10.93.0.0/24', 'front');
    await netctl('service', 'create', '--network', 'front', 'web');
    await netctl('service', 'create', '--network', 'front', 'idle');
    const vip = await vipOf('web');
    const idleVip = await vipOf('idle');
    const client = await sandbox('cl');
    const tasks: Task[] = [];
    for (const base of ['w1', 'w2', 'w3']) {
      const task = await sandbox(base, '--service', 'web');
      await servers.start(task.name);
      tasks.push(task);
    }

    // Joins wait for the rules: no polling on one host.
    const tcp = await connections(client.name, 'tcp', vip, 90);
    t.log(`90 TCP connections: ${show(tcp)}`);
    balanced(t, tcp, 90, tasks, 0.2, 'TCP on the bridge');

    const refusedTcp = await connections(client.name, 'tcp', idleVip, 3, { timeoutSeconds: 5 });
    t.log(`TCP to the VIP of a service with no task: ${show(refusedTcp)}`);
    t.is(refusedTcp.counts.size, 0, `no answer from ${idleVip}: ${show(refusedTcp)}`);
    refused(t, refusedTcp, 3, `TCP to ${idleVip}`);
    const refusedUdp = await connections(client.name, 'udp', idleVip, 3, { timeoutSeconds: 5 });
    t.log(`UDP to the VIP of a service with no task: ${show(refusedUdp)}`);
    // The reject is in the sandbox's own output path, so send() itself fails (EPERM) rather than a later recv (ECONNREFUSED).
    t.is(refusedUdp.counts.size, 0, `no answer from ${idleVip}: ${show(refusedUdp)}`);
    t.true(
      refusedUdp.failures.length === 3 && refusedUdp.failures.every((failure) => /^(PermissionError|ConnectionRefusedError) /.test(failure)),
      `UDP fails at once, not after a timeout: ${show(refusedUdp)}`,
    );

    const all = [client, ...tasks];
    for (const { name } of all) t.true(await holdsServicesTable(name), `${name} holds the netctl_services table before rm`);
    await netctl('service', 'rm', 'web', 'idle');
    for (const { name } of all) t.false(await holdsServicesTable(name), `${name} holds no netctl_services table once rm returned`);
    t.is((await netctl('service', 'ls', '-q')).trim(), '');
  },
);
