/**
 * Docker's predefined networks on a real daemon, as `dockerd` has them:
 * `bridge` (the default bridge, on the kernel bridge netctl0), `host` and
 * `none`, made at start, never removed, skipped by prune; `--bridge none`
 * leaves out the default bridge. Each daemon runs in a test host namespace.
 */
import { request } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { NETCTL_CLI, type RunningDaemon, startDaemon } from '../helpers/daemon.js';
import { addNetns, addresses, pings, removeNetns, run, uniqueName } from '../helpers/kernel.js';

/** A host namespace with a state directory, both removed by teardown. */
async function hostFor(t: ExecutionContext): Promise<{ netnsPath: string; stateDir: string; socket: string }> {
  const name = uniqueName('p');
  const netnsPath = await addNetns(name);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-predef-'));
  t.teardown(async () => {
    await removeNetns(name);
    await rm(stateDir, { recursive: true, force: true });
  });
  return { netnsPath, stateDir, socket: join(stateDir, 'netctl.sock') };
}

function cliOf(socket: string) {
  const netctl = (...args: string[]) => run(process.execPath, [NETCTL_CLI, '-H', `unix://${socket}`, ...args]);
  const ok = async (...args: string[]) => {
    const result = await netctl(...args);
    if (result.code !== 0) throw new Error(`netctl ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  return { netctl, ok };
}

/** The status and message of an API call, as a Docker client sees them. */
function api(socket: string, method: string, path: string, body?: unknown): Promise<{ status: number; message: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, method, path, headers: { 'Content-Type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, message: text === '' ? '' : ((JSON.parse(text) as { message?: string }).message ?? '') }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

test.serial('the default daemon has bridge, host and none: kept across restarts, never removed, skipped by prune, one null and one host network', async (t) => {
  const host = await hostFor(t);
  const sandbox = uniqueName('s');
  t.teardown(() => removeNetns(sandbox));
  let daemon: RunningDaemon = await startDaemon({ ...host, predefinedNetworks: true, args: ['--dns', '127.0.0.1'] });
  t.teardown(() => daemon.stop('SIGKILL'));
  const { netctl, ok } = cliOf(host.socket);
  const list = () => ok('network', 'ls', '--no-trunc', '--format', '{{.ID}} {{.Name}} {{.Driver}} {{.Scope}}');

  const listed = (await list()).trim().split('\n').sort((a, b) => (a.split(' ')[1] ?? '').localeCompare(b.split(' ')[1] ?? ''));
  t.deepEqual(listed.map((line) => line.split(' ').slice(1).join(' ')), ['bridge bridge local', 'host host local', 'none null local']);
  const options = JSON.parse(await ok('network', 'inspect', '-f', '{{json .Options}}', 'bridge')) as Record<string, string>;
  t.deepEqual(options, { 'com.docker.network.bridge.default_bridge': 'true', 'com.docker.network.bridge.name': 'netctl0' });
  t.is((await ok('network', 'inspect', '-f', '{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}', 'bridge')).trim(), '172.17.0.0/16 172.17.0.1');
  t.deepEqual(await addresses(host.netnsPath, 'netctl0'), ['172.17.0.1/16']);
  t.is((await ok('network', 'ls', '-q', '-f', 'type=builtin')).trim().split('\n').length, 3);

  for (const name of ['bridge', 'host', 'none']) {
    t.deepEqual(await api(host.socket, 'DELETE', `/networks/${name}`), { status: 403, message: `${name} is a pre-defined network and cannot be removed` });
    const removed = await netctl('network', 'rm', name);
    t.not(removed.code, 0);
    t.regex(removed.stderr, new RegExp(`${name} is a pre-defined network and cannot be removed`));
  }
  await ok('network', 'create', 'extra');
  t.is(await ok('network', 'prune', '-f'), 'Deleted Networks:\nextra\n\n');

  for (const driver of ['null', 'host']) {
    t.deepEqual(await api(host.socket, 'POST', '/networks/create', { Name: `another-${driver}`, Driver: driver }), {
      status: 403,
      message: `only one instance of "${driver}" network is allowed`,
    });
  }

  await ok('sandbox', 'create', sandbox);
  t.deepEqual(await api(host.socket, 'POST', '/networks/host/connect', { Container: sandbox }), {
    status: 400,
    message: 'container cannot be disconnected from host network or connected to host network',
  });
  const connect = await netctl('network', 'connect', 'host', sandbox);
  t.not(connect.code, 0);
  t.regex(connect.stderr, /container cannot be disconnected from host network or connected to host network/);
  const disconnect = await netctl('network', 'disconnect', 'host', sandbox);
  t.not(disconnect.code, 0);
  t.regex(disconnect.stderr, /container cannot be disconnected from host network or connected to host network/);

  // The default bridge carries traffic; none gives an endpoint with no interface.
  await ok('network', 'connect', 'bridge', sandbox);
  await ok('network', 'connect', 'none', sandbox);
  t.true(await pings(`/var/run/netns/${sandbox}`, '172.17.0.1'), 'a sandbox on bridge reaches its gateway');
  const interfaces = JSON.parse(await ok('sandbox', 'inspect', '-f', '{{json .Networks}}', sandbox)) as Record<string, { InterfaceName: string }>;
  t.deepEqual(Object.values(interfaces).map((network) => network.InterfaceName).sort(), ['', 'eth0']);

  // A restart makes none of them again.
  const before = await list();
  await daemon.stop('SIGTERM');
  daemon = await startDaemon({ ...host, predefinedNetworks: true, args: ['--dns', '127.0.0.1'] });
  t.is(await list(), before);
});

test.serial('--bridge none leaves out the default bridge, as with dockerd', async (t) => {
  const host = await hostFor(t);
  const daemon = await startDaemon({ ...host, predefinedNetworks: true, args: ['--dns', '127.0.0.1', '--bridge', 'none'] });
  t.teardown(() => daemon.stop('SIGKILL'));
  const { ok } = cliOf(host.socket);
  t.deepEqual((await ok('network', 'ls', '--format', '{{.Name}}')).trim().split('\n').sort(), ['host', 'none']);
  // Nothing holds the name: an operator's own network may take it.
  await ok('network', 'create', 'bridge');
  await ok('network', 'rm', 'bridge');
});
