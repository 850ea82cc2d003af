/**
 * The ingress routing mesh as a user checks it: a service's published port
 * answers on every host's underlay address, whichever host its tasks run on.
 * Three simulated hosts and etcd; a client namespace on the underlay (an
 * address of the hosts' /24 that no host has) connects to HOST:8080; the
 * tasks are small servers on port 80 that answer each TCP connection and UDP
 * datagram with their name and the peer address they see, so the test can
 * tell which task answered and that the client's own address reached it.
 * Tasks join the ingress network asynchronously after `network connect`:
 * the test waits for conditions (answers, rules), never for clocks.
 */
import { existsSync } from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { type Cluster, makeCluster, type SimHost } from '../helpers/cluster.js';
import { allAnsweredBy, balanced, type ClientOptions, connectionStream, pinnedFlow, refused, runClient, Servers, show, tallyOf } from '../helpers/conn-tally.js';
import { inNetns } from '../helpers/kernel.js';
import { until } from '../helpers/wait.js';

const nsPath = (name: string) => `/var/run/netns/${name}`;
const ipOf = (cidr: string) => cidr.split('/')[0] ?? '';
/** By path: npm puts node_modules/.bin first in PATH, where @vercel/nft has a command of the same name. */
const NFT = '/usr/sbin/nft';
/** Where the tasks listen. */
const TARGET_PORT = 80;
/** web's published port (ingress mode, TCP and UDP). */
const PORT = 8080;
/** hostweb's published port (host mode, TCP). */
const HOST_MODE_PORT = 8081;
/** The mesh's reply rules in a task's namespace: priorities 30100… (mesh-rules.ts). */
const REPLY_RULES = /^301\d\d:|^302\d\d:/m;

/** `count` attempts from the client's namespace to address:8080, or to `options.port`. */
const connections = (netnsPath: string, proto: 'tcp' | 'udp', address: string, count: number, options: Partial<ClientOptions> = {}) =>
  runClient(netnsPath, proto, address, count, { port: PORT, ...options });

interface Task {
  readonly name: string;
  readonly host: SimHost;
}

/** The namespace's whole nft ruleset; throws when nft fails, so an empty answer means no rules. */
async function ruleset(netnsPath: string): Promise<string> {
  const result = await inNetns(netnsPath, NFT, ['list', 'ruleset']);
  if (result.code !== 0) throw new Error(`nft list ruleset in ${netnsPath}: ${result.stderr}`);
  return result.stdout;
}

/** The namespace's `ip rule` lines; throws when ip fails. */
async function ipRules(netnsPath: string): Promise<string> {
  const result = await inNetns(netnsPath, 'ip', ['rule']);
  if (result.code !== 0) throw new Error(`ip rule in ${netnsPath}: ${result.stderr}`);
  return result.stdout;
}

/** The body of table `family name` in a ruleset, undefined when there is no such table. */
function tableOf(rules: string, family: string, name: string): string | undefined {
  const start = rules.indexOf(`table ${family} ${name} {`);
  if (start < 0) return undefined;
  const end = rules.indexOf('\n}', start);
  return rules.slice(start, end < 0 ? undefined : end + 2);
}

/** The addresses the chain of a published port DNATs to in that table, undefined when the port has no chain there. */
function dnatTargets(table: string | undefined, protocol: 'tcp' | 'udp', port: number): string[] | undefined {
  const chain = new RegExp(`chain port_${protocol}_${port} \\{([^]*?)\\n\\t\\}`).exec(table ?? '');
  if (chain === null) return undefined;
  return [...(chain[1] ?? '').matchAll(/\d+\.\d+\.\d+\.\d+/g)].map((m) => m[0]).sort();
}

/** The host's ingress sandbox (its namespace path), found by its label; undefined when it has none. */
async function ingressSandboxOf(cluster: Cluster, host: SimHost): Promise<string | undefined> {
  const rows = await cluster.ok(host, 'sandbox', 'ls', '--format', '{{.Netns}}\t{{.Label "com.netctl.ingress-sandbox"}}');
  return rows.split('\n').find((row) => row.endsWith('\ttrue'))?.split('\t')[0];
}

/** The task addresses on the ingress network that the host's ingress sandbox sends the port's connections to. */
async function rotationOf(entry: string, protocol: 'tcp' | 'udp', port = PORT): Promise<string[] | undefined> {
  return dnatTargets(tableOf(await ruleset(entry), 'ip', 'netctl_ingress'), protocol, port);
}

/** The sandbox's address on a network, as its host shows it ('' when it has none). */
async function addressOn(cluster: Cluster, host: SimHost, network: string, sandbox: string): Promise<string> {
  const template = `{{range .Containers}}{{if eq .Name "${sandbox}"}}{{.IPv4Address}}{{end}}{{end}}`;
  return ipOf((await cluster.ok(host, 'network', 'inspect', '-f', template, network)).trim());
}

/** Waits until the mesh has attached the task to the ingress network; its address there. */
async function ingressAddressOf(cluster: Cluster, task: Task): Promise<string> {
  const { value } = await until(
    `${task.name} on the ingress network`,
    async () => (await addressOn(cluster, task.host, 'ingress', task.name)) || undefined,
    30_000,
  );
  return value;
}

/** Makes a sandbox on `host`, connects it to `network` as a task of `service` and starts its server. */
async function taskOn(cluster: Cluster, servers: Servers, host: SimHost, network: string, service: string, base: string): Promise<Task> {
  const name = cluster.sandboxName(base);
  await cluster.ok(host, 'sandbox', 'create', name);
  await cluster.ok(host, 'network', 'connect', '--service', service, network, name);
  await servers.start(name);
  return { name, host };
}

interface MeshSetup {
  readonly cluster: Cluster;
  readonly hosts: [SimHost, SimHost, SimHost];
  readonly servers: Servers;
  /** web's tasks: two on host 1, one on host 2. */
  readonly tasks: [Task, Task, Task];
  /** The client's namespace on the underlay, and its address there. */
  readonly client: { readonly netnsPath: string; readonly address: string };
  destroy(): Promise<void>;
}

/**
 * Three hosts, an overlay network `front`, service `web` publishing 8080→80
 * over TCP and UDP in ingress mode, tasks w1, w2 on host 1 and w3 on host 2,
 * a client on the underlay; resolves once connections to every host's
 * address reach all three tasks.
 */
async function meshSetup(t: ExecutionContext, subnet: string): Promise<MeshSetup> {
  const cluster = await makeCluster(3);
  const servers = new Servers(TARGET_PORT, 'name@peer');
  let destroyed: Promise<void> | undefined;
  const destroy = () =>
    (destroyed ??= (async () => {
      await servers.killAll();
      await cluster.destroy();
    })());
  try {
    const hosts = cluster.hosts as [SimHost, SimHost, SimHost];
    const [h1, h2] = hosts;
    for (const host of hosts) await cluster.startDaemon(host);
    await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '--subnet', subnet, 'front');
    await cluster.ok(h1, 'service', 'create', '--network', 'front', '-p', `${PORT}:${TARGET_PORT}`, '-p', `${PORT}:${TARGET_PORT}/udp`, 'web');
    const tasks: [Task, Task, Task] = [
      await taskOn(cluster, servers, h1, 'front', 'web', 'w1'),
      await taskOn(cluster, servers, h1, 'front', 'web', 'w2'),
      await taskOn(cluster, servers, h2, 'front', 'web', 'w3'),
    ];
    const address = `${h1.address.split('.').slice(0, 3).join('.')}.200`;
    if (hosts.some((host) => host.address === address)) throw new Error(`a host has ${address}`);
    const { netnsPath } = await cluster.addUnderlayHost(address);
    const client = { netnsPath, address };
    // Tasks join the ingress network after connect returns: wait until each host's port reaches all of them.
    const names = tasks.map((task) => task.name).sort();
    const { ms } = await until(
      'every host to send connections on to all 3 tasks',
      async () => {
        const rounds = await Promise.all(hosts.map((host) => connections(netnsPath, 'tcp', host.address, 6, { timeoutSeconds: 1, maxFailures: 6 })));
        return rounds.every((round) => JSON.stringify([...round.counts.keys()].sort()) === JSON.stringify(names)) ? true : undefined;
      },
      60_000,
    );
    t.log(`every host's port ${PORT} reached all 3 tasks ${ms.toFixed(0)} ms after the last connect returned`);
    return { cluster, hosts, servers, tasks, client, destroy };
  } catch (err) {
    await destroy();
    throw err;
  }
}

/*
 * The first tests share one cluster, made by the first that runs and taken
 * down by the service rm test, by the test with a cluster of its own before
 * it makes one (two clusters of one process share addresses), or after all.
 */
let shared: Promise<MeshSetup> | undefined;
function sharedSetup(t: ExecutionContext): Promise<MeshSetup> {
  shared ??= meshSetup(t, '10.96.0.0/24');
  return shared;
}
async function destroyShared(): Promise<void> {
  const setup = await shared?.catch(() => undefined);
  await setup?.destroy();
}
test.after.always(destroyShared);

test.serial(
  'ingress mode, 3 hosts: a port published on every host reaches the tasks on hosts 1 and 2 from host 3, TCP and UDP, with the client address seen',
  async (t) => {
    const { cluster, hosts, tasks, client } = await sharedSetup(t);
    const [h1, h2, h3] = hosts;

    const tcp = await connections(client.netnsPath, 'tcp', h3.address, 300);
    t.log(`300 TCP connections to host 3 (no task there): ${show(tcp)}`);
    balanced(t, tcp, 300, tasks, 0.2, 'TCP to host 3', client.address);
    for (const host of [h1, h2]) {
      const tally = await connections(client.netnsPath, 'tcp', host.address, 30);
      t.log(`30 TCP connections to host ${host.index}: ${show(tally)}`);
      allAnsweredBy(t, tally, 30, tasks, `TCP to host ${host.index}`, client.address);
      t.true(tasks.every((task) => (tally.counts.get(task.name) ?? 0) > 0), `TCP to host ${host.index} reached every task: ${show(tally)}`);
    }

    const udp = await connections(client.netnsPath, 'udp', h3.address, 30);
    t.log(`30 UDP datagrams to host 3, each from a fresh socket: ${show(udp)}`);
    allAnsweredBy(t, udp, 30, tasks, 'UDP to host 3', client.address);
    t.true(tasks.every((task) => (udp.counts.get(task.name) ?? 0) > 0), `UDP to host 3 reached every task: ${show(udp)}`);
    const udp1 = await connections(client.netnsPath, 'udp', h1.address, 9);
    allAnsweredBy(t, udp1, 9, tasks, 'UDP to host 1', client.address);
    // One source port: one flow, which conntrack keeps on its task.
    const pinned = await connections(client.netnsPath, 'udp', h3.address, 6, { sourcePort: 23456 });
    t.log(`6 UDP datagrams to host 3 from one source port: ${show(pinned)}`);
    allAnsweredBy(t, pinned, 6, tasks, 'a pinned UDP flow', client.address);
    t.is(pinned.counts.size, 1, `a pinned UDP flow stays on one task: ${show(pinned)}`);

    // A sandbox on the overlay, no task, reaches the port through another host's address. (Through its own
    // host's it does not yet: it shares the gateway bridge with the ingress sandbox, whose ports are isolated.)
    const neighbour = cluster.sandboxName('nb');
    await cluster.ok(h1, 'sandbox', 'create', neighbour);
    await cluster.ok(h1, 'network', 'connect', 'front', neighbour);
    const fromNeighbour = await connections(`/var/run/netns/${neighbour}`, 'tcp', h2.address, 6);
    t.is([...fromNeighbour.counts.values()].reduce((a, b) => a + b, 0), 6, `a sandbox on host 1's overlay reaches the port through host 2: ${show(fromNeighbour)}`);
    await cluster.ok(h1, 'sandbox', 'rm', neighbour);

    // What a user sees, asked of host 3, which learned all of it through etcd.
    const ports = (JSON.parse(await cluster.ok(h3, 'service', 'inspect', 'web')) as { Endpoint: { Ports?: unknown } }[])[0]?.Endpoint.Ports;
    t.deepEqual(ports, [
      { Protocol: 'tcp', TargetPort: TARGET_PORT, PublishedPort: PORT, PublishMode: 'ingress' },
      { Protocol: 'udp', TargetPort: TARGET_PORT, PublishedPort: PORT, PublishMode: 'ingress' },
    ]);
    t.is(await cluster.ok(h3, 'service', 'ls', '--format', '{{.Name}} {{.Ports}}'), `web *:${PORT}->${TARGET_PORT}/tcp, *:${PORT}->${TARGET_PORT}/udp\n`);
    t.regex(await cluster.ok(h3, 'network', 'ls', '--format', '{{.Name}} {{.Driver}} {{.Scope}}'), /^ingress overlay global$/m);
    t.is(await cluster.ok(h3, 'network', 'inspect', 'ingress', '-f', '{{.Ingress}}'), 'true\n');
    t.is(await cluster.ok(h3, 'network', 'inspect', 'front', '-f', '{{.Ingress}}'), 'false\n');
    // Each host's entry sends the port on to the three tasks' addresses on the ingress network.
    const onIngress = (await Promise.all(tasks.map((task) => ingressAddressOf(cluster, task)))).sort();
    for (const host of hosts) {
      const entry = await ingressSandboxOf(cluster, host);
      t.not(entry, undefined, `host ${host.index} has an ingress sandbox`);
      t.deepEqual(await rotationOf(entry ?? '', 'tcp'), onIngress, `host ${host.index}'s ingress sandbox sends TCP ${PORT} to the 3 tasks`);
    }
  },
);

test.serial(
  'a task is in its host\'s rotation when connect returns and out of it when disconnect returns; the port works again after its daemon restarts',
  async (t) => {
    const { cluster, hosts, servers, tasks, client } = await sharedSetup(t);
    const h3 = hosts[2];
    const w4 = cluster.sandboxName('w4');
    await cluster.ok(h3, 'sandbox', 'create', w4);
    await servers.start(w4);
    await cluster.ok(h3, 'network', 'connect', '--service', 'web', 'front', w4);
    // Host 3's round robin goes over the 4 tasks in turn: 12 connections give each its share, w4 included.
    const joined = await connections(client.netnsPath, 'tcp', h3.address, 12);
    t.log(`right after connect returned, 12 connections to host 3: ${show(joined)}`);
    allAnsweredBy(t, joined, 12, [...tasks, { name: w4, host: h3 }], 'TCP to host 3 after connect', client.address);
    t.true((joined.counts.get(w4) ?? 0) > 0, `w4 is in host 3's rotation as connect returns: ${show(joined)}`);

    await cluster.ok(h3, 'network', 'disconnect', 'front', w4);
    const left = await connections(client.netnsPath, 'tcp', h3.address, 12);
    t.log(`right after disconnect returned, 12 connections to host 3: ${show(left)}`);
    allAnsweredBy(t, left, 12, tasks, 'TCP to host 3 after disconnect', client.address);
    await cluster.ok(h3, 'sandbox', 'rm', w4);

    await cluster.stopDaemon(h3, 'SIGTERM');
    await cluster.startDaemon(h3);
    // The restart brings a new VTEP up: wait until the path is whole again, then count.
    await until(
      'host 3 to answer again after its restart',
      async () => ((await connections(client.netnsPath, 'tcp', h3.address, 3, { timeoutSeconds: 1, maxFailures: 3 })).counts.size > 0 ? true : undefined),
      60_000,
    );
    const restarted = await connections(client.netnsPath, 'tcp', h3.address, 30);
    t.log(`30 connections to host 3 after its daemon restarted: ${show(restarted)}`);
    allAnsweredBy(t, restarted, 30, tasks, 'TCP to host 3 after its restart', client.address);
    t.true(tasks.every((task) => (restarted.counts.get(task.name) ?? 0) > 0), `every task still in host 3's rotation: ${show(restarted)}`);
  },
);

test.serial('host mode, 3 hosts: the port opens only on the host with a task; the others refuse at once', async (t) => {
  const { cluster, hosts, servers, client } = await sharedSetup(t);
  const [h1, h2, h3] = hosts;
  await cluster.ok(h2, 'service', 'create', '--network', 'front', '--publish', `published=${HOST_MODE_PORT},target=${TARGET_PORT},mode=host`, 'hostweb');
  const task = await taskOn(cluster, servers, h1, 'front', 'hostweb', 'hw');

  // The mesh follows the records: host 1 opens the port soon after connect returns.
  const { ms } = await until(
    `host 1 to open ${HOST_MODE_PORT}`,
    async () => ((await connections(client.netnsPath, 'tcp', h1.address, 1, { port: HOST_MODE_PORT, timeoutSeconds: 1, maxFailures: 1 })).counts.size > 0 ? true : undefined),
    15_000,
  );
  t.log(`host 1 answered on ${HOST_MODE_PORT} ${ms.toFixed(0)} ms after connect returned`);
  const first = await connections(client.netnsPath, 'tcp', h1.address, 30, { port: HOST_MODE_PORT });
  t.log(`30 TCP connections to host 1:${HOST_MODE_PORT}: ${show(first)}`);
  allAnsweredBy(t, first, 30, [task], `TCP to host 1:${HOST_MODE_PORT}`, client.address);
  for (const host of [h2, h3]) {
    const tally = await connections(client.netnsPath, 'tcp', host.address, 3, { port: HOST_MODE_PORT, maxFailures: 3 });
    t.log(`TCP to host ${host.index}:${HOST_MODE_PORT} (no task there): ${show(tally)}`);
    refused(t, tally, 3, `TCP to host ${host.index}:${HOST_MODE_PORT}`);
  }
  const hostRules = tableOf(await ruleset(h1.netnsPath), 'ip', 'netctl_published');
  const bridged = await addressOn(cluster, h1, 'netctl_gwbridge', task.name);
  t.deepEqual(dnatTargets(hostRules, 'tcp', HOST_MODE_PORT), [bridged], `host 1 DNATs ${HOST_MODE_PORT} straight to the task's gateway-bridge address`);
  t.is(await addressOn(cluster, h1, 'ingress', task.name), '', 'a task of a host-mode service is not on the ingress network');
  t.is(tableOf(await ruleset(nsPath(task.name)), 'ip', 'netctl_ingress'), undefined, 'nor has it reply rules');
  t.is(
    (await cluster.ok(h3, 'service', 'inspect', 'hostweb', '-f', '{{json .Endpoint.Ports}}')).trim(),
    JSON.stringify([{ Protocol: 'tcp', TargetPort: TARGET_PORT, PublishedPort: HOST_MODE_PORT, PublishMode: 'host' }]),
  );
});

test.serial('published port errors through the CLI: a port another service has is refused naming both, from any host; bad port numbers', async (t) => {
  const { cluster, hosts } = await sharedSetup(t);
  const [, h2, h3] = hosts;
  const serviceNames = async () => (await cluster.ok(h3, 'service', 'ls', '--format', '{{.Name}}')).split('\n').filter(Boolean).sort();
  const services = await serviceNames();
  const taken = await cluster.netctl(h3, 'service', 'create', '--network', 'front', '-p', `${PORT}:81`, 'other');
  t.is(taken.code, 1, `service create with a taken port: ${taken.stderr}`);
  t.is(taken.stderr, `Error response from daemon: port ${PORT}/tcp is already published by service web\n`);
  const takenUdp = await cluster.netctl(h2, 'service', 'create', '--network', 'front', '--publish', `published=${PORT},target=53,protocol=udp`, 'other');
  t.is(takenUdp.code, 1);
  t.is(takenUdp.stderr, `Error response from daemon: port ${PORT}/udp is already published by service web\n`);
  // A local service on a bridge network: the cluster's claims hold for it too.
  await cluster.ok(h2, 'network', 'create', '--subnet', '10.97.0.0/24', 'near');
  const local = await cluster.netctl(h2, 'service', 'create', '--network', 'near', '-p', `${PORT}:80`, 'other');
  t.is(local.code, 1);
  t.is(local.stderr, `Error response from daemon: port ${PORT}/tcp is already published by service web\n`);
  const outOfRange = await cluster.netctl(h3, 'service', 'create', '--network', 'front', '-p', '70000:80', 'other');
  t.is(outOfRange.code, 1);
  t.regex(outOfRange.stderr, /^invalid argument "70000:80" for "-p, --publish" flag: invalid published port 70000: out of range \(1-65535\)\n/);
  const zeroTarget = await cluster.netctl(h3, 'service', 'create', '--network', 'front', '--publish', 'published=8090,target=0', 'other');
  t.is(zeroTarget.code, 1);
  t.regex(zeroTarget.stderr, /invalid target port 0: out of range \(1-65535\)/);
  // Nothing was made, and no claim was left behind: the port is still web's.
  t.deepEqual(await serviceNames(), services, 'no service was made');
  t.is((await cluster.ok(h3, 'service', 'ls', '--format', '{{.Ports}}', '-f', 'name=web')).trim(), `*:${PORT}->${TARGET_PORT}/tcp, *:${PORT}->${TARGET_PORT}/udp`);
});

test.serial(
  'service rm closes the port on every host and leaves no rule behind: host tables, ingress sandboxes, task reply rules',
  async (t) => {
    const { cluster, hosts, tasks, client } = await sharedSetup(t);
    const [h1, , h3] = hosts;
    const entries = await Promise.all(hosts.map((host) => ingressSandboxOf(cluster, host)));
    t.true(entries.every((entry) => entry !== undefined), 'every host has an ingress sandbox before rm');
    const hostMode = (await cluster.ok(h1, 'service', 'ls', '--format', '{{.Name}}')).split('\n').includes('hostweb');

    // A UDP flow that was answered just before rm.
    const flowBefore = await connections(client.netnsPath, 'udp', h3.address, 1, { sourcePort: 23500, maxFailures: 1 });
    allAnsweredBy(t, flowBefore, 1, tasks, 'a UDP flow before rm', client.address);

    await cluster.ok(h3, 'service', 'rm', 'web');
    const portGone = (rules: string) =>
      dnatTargets(tableOf(rules, 'ip', 'netctl_published'), 'tcp', PORT) === undefined &&
      dnatTargets(tableOf(rules, 'ip', 'netctl_published'), 'udp', PORT) === undefined &&
      !new RegExp(`\\. ${PORT} :`).test(tableOf(rules, 'ip', 'netctl_published') ?? '');
    for (const host of hosts) {
      const { ms } = await until(`host ${host.index} to close ${PORT}`, async () => (portGone(await ruleset(host.netnsPath)) ? true : undefined), 15_000);
      t.log(`host ${host.index} closed ${PORT} ${ms.toFixed(0)} ms after rm returned (and the hosts before it)`);
    }
    for (const host of hosts) {
      const tcp = await connections(client.netnsPath, 'tcp', host.address, 3, { maxFailures: 3 });
      refused(t, tcp, 3, `TCP to host ${host.index}:${PORT} after rm`);
      const udp = await connections(client.netnsPath, 'udp', host.address, 3, { maxFailures: 3 });
      refused(t, udp, 3, `UDP to host ${host.index}:${PORT} after rm`);
    }
    // Closed for a flow the hosts tracked before rm, too: it does not go on to where the port led (checked at the end).
    const flowAfter = await connections(client.netnsPath, 'udp', h3.address, 1, { sourcePort: 23500, maxFailures: 1 });
    t.log(`the UDP flow answered before rm, after it: ${show(flowAfter)}`);
    // The mesh takes the tasks off the ingress network and their reply rules away.
    for (const task of tasks) {
      const taskNs = nsPath(task.name);
      let last = '';
      try {
        const { ms } = await until(
          `${task.name} to leave the ingress network and lose its reply rules`,
          async () => {
            const rules = await ruleset(taskNs);
            const routing = await ipRules(taskNs);
            const address = await addressOn(cluster, task.host, 'ingress', task.name);
            last = `ingress address ${JSON.stringify(address)}; ip rule:\n${routing}nft:\n${rules}`;
            const clean = address === '' && tableOf(rules, 'ip', 'netctl_ingress') === undefined && tableOf(rules, 'netdev', 'netctl_ingress') === undefined;
            return clean && !REPLY_RULES.test(routing) ? true : undefined;
          },
          15_000,
        );
        t.log(`${task.name} (host ${task.host.index}) was detached ${ms.toFixed(0)} ms after the port closed`);
      } catch (err) {
        t.fail(`${(err as Error).message}; it holds: ${last}`);
      }
    }
    // No service publishes in ingress mode any more: every host's ingress sandbox goes.
    for (const [i, host] of hosts.entries()) {
      await until(`host ${host.index}'s ingress sandbox to go`, async () => ((await ingressSandboxOf(cluster, host)) === undefined ? true : undefined), 15_000).catch(
        (err: unknown) => t.fail((err as Error).message),
      );
      const entry = entries[i];
      t.false(entry !== undefined && existsSync(entry), `host ${host.index}'s ingress sandbox namespace ${entry} is gone`);
    }
    if (hostMode) {
      // The host-mode service still answers on host 1; its rm takes the host table away.
      const still = await connections(client.netnsPath, 'tcp', h1.address, 3, { port: HOST_MODE_PORT });
      t.is(still.counts.size, 1, `hostweb still answers on host 1: ${show(still)}`);
      await cluster.ok(h1, 'service', 'rm', 'hostweb');
      await until(
        `host 1 to close ${HOST_MODE_PORT}`,
        async () => (dnatTargets(tableOf(await ruleset(h1.netnsPath), 'ip', 'netctl_published'), 'tcp', HOST_MODE_PORT) === undefined ? true : undefined),
        15_000,
      );
      const refusedNow = await connections(client.netnsPath, 'tcp', h1.address, 3, { port: HOST_MODE_PORT, maxFailures: 3 });
      refused(t, refusedNow, 3, `TCP to host 1:${HOST_MODE_PORT} after rm`);
    }
    for (const host of hosts) {
      await until(`host ${host.index} to drop its netctl_published table`, async () =>
        tableOf(await ruleset(host.netnsPath), 'ip', 'netctl_published') === undefined ? true : undefined, 15_000,
      ).catch((err: unknown) => t.fail((err as Error).message));
    }
    t.is(await cluster.ok(h1, 'service', 'ls', '-q'), '');
    // Checked last, so that a failure hides nothing else.
    refused(t, flowAfter, 1, `the UDP flow to host 3:${PORT} answered before rm, after rm`);
    await destroyShared();
  },
);

test.serial(
  "ingress mode, 3 hosts: a disconnected task and then host 2's killed daemon leave host 3's rotation; only connections under way then fail",
  async (t) => {
    await destroyShared();
    const setup = await meshSetup(t, '10.98.0.0/24');
    t.teardown(() => setup.destroy());
    const { cluster, hosts, tasks, client } = setup;
    const [h1, h2, h3] = hosts;
    const [gone, kept, remote] = tasks;
    const entry3 = await ingressSandboxOf(cluster, h3);
    if (entry3 === undefined) throw new Error('host 3 has no ingress sandbox');
    const addressOf = new Map(await Promise.all(tasks.map(async (task) => [task.name, await ingressAddressOf(cluster, task)] as const)));
    t.deepEqual(await rotationOf(entry3, 'tcp'), [...addressOf.values()].sort(), "host 3's rotation holds the 3 tasks");

    // UDP flows through host 3, one to the task about to be disconnected and one to host 2's task.
    const goneFlow = (await pinnedFlow(client.netnsPath, h3.address, PORT, [gone], 24000)).sourcePort;
    const remoteFlow = (await pinnedFlow(client.netnsPath, h3.address, PORT, [remote], 24100)).sourcePort;
    // More than one answer each: conntrack then keeps the flows as streams (2 minutes), longer than this test.
    const sticky = await connections(client.netnsPath, 'udp', h3.address, 3, { sourcePort: goneFlow });
    allAnsweredBy(t, sticky, 3, [gone], 'a pinned UDP flow stays on its task', client.address);
    const stickyRemote = await connections(client.netnsPath, 'udp', h3.address, 3, { sourcePort: remoteFlow });
    allAnsweredBy(t, stickyRemote, 3, [remote], 'a pinned UDP flow stays on its task', client.address);

    const stream = connectionStream(client.netnsPath, h3.address, PORT);
    t.teardown(() => stream.kill());
    const begunAfter = (at: bigint) => stream.attempts().filter((a) => a.start > at).length;
    await until('the stream to get going', () => (stream.attempts().length >= 20 ? true : undefined), 30_000);

    // A task disconnected on host 1 leaves host 3's rotation once host 3 hears of it.
    const disconnectAt = process.hrtime.bigint();
    await cluster.ok(h1, 'network', 'disconnect', 'front', gone.name);
    const returnedAt = process.hrtime.bigint();
    const goneAddress = addressOf.get(gone.name) ?? '';
    const { ms: convergeMs } = await until(
      `host 3 to drop ${gone.name} (${goneAddress})`,
      async () => ((await rotationOf(entry3, 'tcp'))?.includes(goneAddress) === false ? true : undefined),
      15_000,
    );
    const convergedAt = process.hrtime.bigint();
    t.log(`disconnect took ${(Number(returnedAt - disconnectAt) / 1e6).toFixed(0)} ms; host 3 dropped ${gone.name} ${convergeMs.toFixed(0)} ms after it returned`);
    // The flow that went to the task goes on to a live one (checked at the end, so that a failure hides nothing else).
    const moved = await connections(client.netnsPath, 'udp', h3.address, 2, { sourcePort: goneFlow, maxFailures: 2 });
    t.log(`the UDP flow that went to ${gone.name}, after host 3 dropped it: ${show(moved)}`);
    // Through its own host too.
    const entry1 = await ingressSandboxOf(cluster, h1);
    const { ms: localMs } = await until(
      `host 1 to drop ${gone.name}`,
      async () => (entry1 !== undefined && (await rotationOf(entry1, 'tcp'))?.includes(goneAddress) === false ? true : undefined),
      15_000,
    );
    t.log(`host 1 dropped ${gone.name} from its rotation ${localMs.toFixed(0)} ms after host 3 did`);
    const local = await connections(client.netnsPath, 'tcp', h1.address, 30);
    allAnsweredBy(t, local, 30, [kept, remote], `TCP to host 1 after the disconnect of ${gone.name}`, client.address);
    await until('60 connections begun after host 3 dropped it', () => (begunAfter(convergedAt) >= 60 ? true : undefined), 120_000);

    // Host 2's daemon dies: its VTEP goes with it, and host 3 drops its task within the lease TTL.
    const killedAt = process.hrtime.bigint();
    await cluster.stopDaemon(h2, 'SIGKILL');
    const remoteAddress = addressOf.get(remote.name) ?? '';
    const { ms: dropMs } = await until(
      `host 3 to drop ${remote.name} (${remoteAddress}) of the dead host 2`,
      async () => ((await rotationOf(entry3, 'tcp'))?.includes(remoteAddress) === false ? true : undefined),
      15_000,
    );
    const droppedAt = process.hrtime.bigint();
    t.log(`host 3 dropped ${remote.name} ${dropMs.toFixed(0)} ms after the kill of host 2's daemon`);
    t.deepEqual(await rotationOf(entry3, 'tcp'), [addressOf.get(kept.name)], `host 3's rotation is ${kept.name} alone`);
    const movedRemote = await connections(client.netnsPath, 'udp', h3.address, 2, { sourcePort: remoteFlow, maxFailures: 2 });
    t.log(`the UDP flow that went to ${remote.name}, after host 3 dropped it: ${show(movedRemote)}`);
    await until('60 connections begun after host 3 dropped host 2', () => (begunAfter(droppedAt) >= 60 ? true : undefined), 120_000);
    const attempts = await stream.stop();

    const ms = (ns: bigint) => (Number(ns) / 1e6).toFixed(0);
    const between = (from: bigint, to: bigint) => attempts.filter((a) => a.start > from && a.start <= to);
    const before = tallyOf(attempts.filter((a) => a.start < disconnectAt));
    const whileDisconnecting = tallyOf(attempts.filter((a) => a.start >= disconnectAt && a.start <= returnedAt));
    const lagging = tallyOf(between(returnedAt, convergedAt));
    // Connections under way at the kill are left out: they may fail.
    const afterDisconnect = tallyOf(between(convergedAt, killedAt).filter((a) => a.end < killedAt));
    const dying = tallyOf(between(killedAt, droppedAt));
    const afterKill = tallyOf(attempts.filter((a) => a.start > droppedAt));
    t.log(`before the disconnect: ${show(before)}`);
    t.log(`begun while the disconnect ran (${ms(returnedAt - disconnectAt)} ms): ${show(whileDisconnecting)}`);
    t.log(`begun after it returned, before host 3 dropped the task (${ms(convergedAt - returnedAt)} ms): ${show(lagging)}`);
    t.log(`begun after host 3 dropped it: ${show(afterDisconnect)}`);
    t.log(`begun after the kill, before host 3 dropped host 2's task (${ms(droppedAt - killedAt)} ms): ${show(dying)}`);
    t.log(`begun after host 3 dropped host 2's task: ${show(afterKill)}`);
    const failed = attempts.filter((a) => a.failure !== undefined);
    const at = (ns: bigint) => `${ns < 0n ? '' : '+'}${ms(ns)} ms`;
    t.log(
      `every failed connection, begun and ended relative to the disconnect (D) and the kill (K): ${JSON.stringify(
        failed.map((a) => `${a.failure} D${at(a.start - disconnectAt)}..${at(a.end - disconnectAt)} K${at(a.start - killedAt)}..${at(a.end - killedAt)}`),
      )}`,
    );

    // Only connections under way while the disconnect ran may fail; none begun after reach the task.
    const failedAfterDisconnect = attempts.filter((a) => a.failure !== undefined && a.start > returnedAt && a.end < killedAt);
    t.deepEqual(
      failedAfterDisconnect.map((a) => `${a.failure} begun ${ms(a.start - returnedAt)} ms after the disconnect returned`),
      [],
      'no connection begun after the disconnect returned failed',
    );
    allAnsweredBy(t, afterDisconnect, afterDisconnect.attempts, [kept, remote], `after host 3 dropped ${gone.name}`, client.address);
    t.true((afterDisconnect.counts.get(remote.name) ?? 0) > 0, `host 2's task still answered then: ${show(afterDisconnect)}`);
    t.is(before.failures.length, 0, `nothing failed before the disconnect: ${show(before)}`);

    // After the kill, connections begun before host 3 dropped the task may fail (half of them go to host 2's task), never those to host 1's.
    t.true(
      [...dying.counts.keys()].every((name) => name === kept.name),
      `between the kill and the drop only ${kept.name} answered: ${show(dying)}`,
    );
    t.true(dying.failures.length <= Math.ceil(dying.attempts / 2) + 1, `at most the connections sent to host 2's task failed: ${show(dying)}`);
    allAnsweredBy(t, afterKill, afterKill.attempts, [kept], "after host 3 dropped host 2's task", client.address);

    // Nothing hangs on a task that left while live ones remain: the UDP flows that went to them moved on.
    allAnsweredBy(t, moved, 2, [kept, remote], `the UDP flow that went to ${gone.name}, once host 3 dropped it`, client.address);
    allAnsweredBy(t, movedRemote, 2, [kept], `the UDP flow that went to ${remote.name} on the dead host, once host 3 dropped it`, client.address);
  },
);
