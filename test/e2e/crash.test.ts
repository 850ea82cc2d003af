/**
 * The daemon killed with SIGKILL at random moments of a churn of sandbox
 * creates, connects, disconnects and removals, 30 times over. After every
 * restart a user finds no endpoint without its sandbox, no sandbox without
 * its namespace, no leaked namespace, veth or resolv.conf, no address held
 * twice, and the kernel wired as the store says; at the end the network
 * can be removed.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { ApiClient } from '../../src/api/client.js';
import { NETCTL_CLI, type RunningDaemon, startDaemon } from '../helpers/daemon.js';
import { addNetns, addresses, links, namespacesWithPrefix, removeNetns, run, uniqueName } from '../helpers/kernel.js';

const TRIALS = 30;
const NAMES = 4;

async function setup(t: ExecutionContext, tag: string) {
  const hostNs = uniqueName(tag);
  const hostNsPath = await addNetns(hostNs);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-crash-'));
  const socket = join(stateDir, 'netctl.sock');
  // Sandbox names share a prefix so that leaks can be found by it.
  const prefix = uniqueName(`${tag}s`).slice(0, 12);
  const start = () => startDaemon({ netnsPath: hostNsPath, stateDir, socket, args: ['--dns', '127.0.0.1'] });
  const state: { daemon: RunningDaemon } = { daemon: await start() };
  t.teardown(async () => {
    await state.daemon.stop('SIGKILL');
    for (const name of await namespacesWithPrefix(prefix)) await removeNetns(name);
    for (const name of await readdir('/etc/netns').catch(() => [] as string[])) {
      if (name.startsWith(prefix)) await rm(join('/etc/netns', name), { recursive: true, force: true });
    }
    await removeNetns(hostNs);
    await rm(stateDir, { recursive: true, force: true });
  });
  return { hostNsPath, stateDir, socket, prefix, state, start, client: () => new ApiClient(`unix://${socket}`) };
}

test.serial('kill -9 at random moments of a churn: every restart converges, and the network can be removed at the end', async (t) => {
  t.timeout(10 * 60_000);
  const { hostNsPath, stateDir, prefix, state, start, client } = await setup(t, 'k');
  await client().createNetwork({ Name: 'churn', IPAM: { Config: [{ Subnet: '10.77.0.0/24' }] } });
  const names = Array.from({ length: NAMES }, (_, i) => `${prefix}${i}`);

  for (let trial = 1; trial <= TRIALS; trial++) {
    const api = client();
    let running = true;
    let commands = 0;
    // Two clients at once keep the daemon busy, so that the kill lands inside operations, not between them.
    const churn = (names: readonly string[]) => async () => {
      for (let i = 0; running; i++) {
        const name = names[i % names.length] ?? '';
        // Each command may fail (the name exists, the daemon is gone): the churn goes on regardless.
        for (const command of [
          () => api.createSandbox({ Name: name }),
          () => api.connect('churn', name),
          () => api.disconnect('churn', name),
          () => api.connect('churn', name),
          () => api.removeSandbox(name),
        ]) {
          if (!running) return;
          await command().catch(() => undefined);
          commands++;
        }
      }
    };
    const churning = Promise.all([churn(names.slice(0, 2))(), churn(names.slice(2))()]);
    // A random moment once the churn is under way.
    const deadline = Date.now() + 20_000;
    while (commands < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 600));
    await state.daemon.stop('SIGKILL');
    running = false;
    await churning;
    state.daemon = await start();
    await assertConverged(t, { api: client(), hostNsPath, stateDir, prefix, label: `trial ${trial}` });
  }

  const api = client();
  for (const sandbox of await api.listSandboxes()) await api.removeSandbox(sandbox.Id);
  await api.removeNetwork('churn');
  t.deepEqual(await namespacesWithPrefix(prefix), []);
  t.deepEqual((await links(hostNsPath)).filter((link) => link.linkinfo?.info_kind === 'veth'), []);
});

async function assertConverged(
  t: ExecutionContext,
  { api, hostNsPath, stateDir, prefix, label }: { api: ApiClient; hostNsPath: string; stateDir: string; prefix: string; label: string },
): Promise<void> {
  const sandboxes = await api.listSandboxes();
  const network = await api.inspectNetwork('churn');
  const sandboxNames = new Set(sandboxes.map((s) => s.Name));
  for (const sandbox of sandboxes) {
    t.true(sandbox.NetnsPath !== '' && existsSync(sandbox.NetnsPath), `${label}: sandbox ${sandbox.Name} has no namespace (${sandbox.NetnsPath})`);
  }
  const orphans = Object.keys(network.Containers).filter((key) => key.startsWith('ep-'));
  t.deepEqual(orphans, [], `${label}: endpoints joined to nothing`);
  const held = Object.values(network.Containers).map((c) => c.IPv4Address);
  t.is(new Set(held).size, held.length, `${label}: an address is held twice: ${held.join(' ')}`);
  // The kernel as the store says: each joined endpoint is an interface with its address, and no veth more.
  let joined = 0;
  for (const sandbox of sandboxes) {
    for (const endpoint of Object.values(sandbox.Networks)) {
      joined++;
      t.deepEqual(await addresses(sandbox.NetnsPath, endpoint.InterfaceName), [endpoint.IPv4Address], `${label}: ${sandbox.Name} ${endpoint.InterfaceName}`);
    }
  }
  const veths = (await links(hostNsPath)).filter((link) => link.linkinfo?.info_kind === 'veth');
  t.is(veths.length, joined, `${label}: veths ${veths.map((v) => v.ifname).join(' ')} for ${joined} joined endpoints`);
  const leakedNamespaces = (await namespacesWithPrefix(prefix)).filter((name) => !sandboxNames.has(name));
  t.deepEqual(leakedNamespaces, [], `${label}: leaked namespaces`);
  const leakedFiles = (await readdir('/etc/netns').catch(() => [] as string[])).filter((name) => name.startsWith(prefix) && !sandboxNames.has(name));
  t.deepEqual(leakedFiles, [], `${label}: leaked /etc/netns entries`);
  const stateFiles = await readdir(join(stateDir, 'resolv')).catch(() => [] as string[]);
  t.deepEqual(stateFiles, [], `${label}: named sandboxes need no resolv.conf under the state directory`);
}

test.serial('a runtime\'s own namespace: its resolv.conf stays the user\'s, and the host\'s namespaces are refused', async (t) => {
  const { stateDir, prefix, client } = await setup(t, 'u');
  const userNs = `${prefix}own`;
  const userNsPath = await addNetns(userNs);
  t.teardown(() => removeNetns(userNs));
  await mkdir(`/etc/netns/${userNs}`, { recursive: true });
  const userFile = `/etc/netns/${userNs}/resolv.conf`;
  await writeFile(userFile, 'nameserver 192.0.2.53\n');
  const api = client();

  const sandbox = await api.createSandbox({ Name: `${prefix}rt`, NetnsPath: userNsPath });
  await api.createNetwork({ Name: 'n', IPAM: { Config: [{ Subnet: '10.78.0.0/24' }] } });
  await api.connect('n', sandbox.Name);
  // The DNS writes the sandbox's file once it sees the sandbox: wait for it, then check both files.
  const deadline = Date.now() + 20_000;
  let resolvConfPath = '';
  while (Date.now() < deadline) {
    resolvConfPath = (await api.inspectSandbox(sandbox.Name)).ResolvConfPath;
    if (resolvConfPath.startsWith(stateDir) && existsSync(resolvConfPath)) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  t.true(resolvConfPath.startsWith(stateDir), `the sandbox's resolv.conf is netctl's own file, not the user's: ${resolvConfPath}`);
  t.regex(await readFile(resolvConfPath, 'utf8'), /nameserver 127\.0\.0\.11/);
  t.is(await readFile(userFile, 'utf8'), 'nameserver 192.0.2.53\n');
  await api.removeSandbox(sandbox.Name);
  t.is(await readFile(userFile, 'utf8'), 'nameserver 192.0.2.53\n', 'removing the sandbox leaves the user\'s file');
  while (existsSync(resolvConfPath) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  t.false(existsSync(resolvConfPath), 'netctl removes the file it wrote');
  t.true(existsSync(userNsPath), 'a namespace netctl did not make stays');

  // /proc/self is the daemon's own namespace; PID 1's is the host's root one (unreadable in some containers,
  // where it is refused as not a namespace at all).
  for (const [path, message] of [
    ['/proc/self/ns/net', /host's own network namespace/],
    ['/proc/1/ns/net', /host's own network namespace|is not a network namespace/],
  ] as const) {
    const refused = await run(process.execPath, [NETCTL_CLI, '-H', `unix://${join(stateDir, 'netctl.sock')}`, 'sandbox', 'create', '--netns', path, `${prefix}h`]);
    t.is(refused.code, 1, path);
    t.regex(refused.stderr, message, path);
  }
  t.deepEqual((await api.listSandboxes()).map((s) => s.Name), []);
});
