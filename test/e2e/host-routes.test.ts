/**
 * Automatic subnets skip what the daemon's namespace already routes, as
 * Docker's do: a daemon in a test host namespace where the test put a link
 * holding the first default pools and a route to the next one.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { NETCTL_CLI, startDaemon } from '../helpers/daemon.js';
import { addNetns, removeNetns, run, uniqueName } from '../helpers/kernel.js';

test.serial('network create without --subnet takes the first default pool no route or address of the host covers', async (t) => {
  const hostNs = uniqueName('r');
  const hostNsPath = await addNetns(hostNs);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-routes-'));
  const socket = join(stateDir, 'netctl.sock');
  t.teardown(async () => {
    await removeNetns(hostNs);
    await rm(stateDir, { recursive: true, force: true });
  });
  const ip = async (...args: string[]) => {
    const result = await run('ip', ['-n', hostNs, ...args]);
    if (result.code !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
  };
  // As if docker0 were here: 172.17.0.0/16 on a link, and something routed to 172.18.0.0/16 through it.
  await ip('link', 'add', 'docker0', 'type', 'bridge');
  await ip('link', 'set', 'docker0', 'up');
  await ip('addr', 'add', '172.17.0.1/16', 'dev', 'docker0');
  await ip('addr', 'add', 'fd00:d0c::1/64', 'dev', 'docker0', 'nodad');
  await ip('route', 'add', '172.18.0.0/16', 'via', '172.17.0.254');

  const daemon = await startDaemon({ netnsPath: hostNsPath, stateDir, socket, args: ['--dns', '127.0.0.1'] });
  t.teardown(() => daemon.stop('SIGKILL'));
  const ok = async (...args: string[]) => {
    const result = await run(process.execPath, [NETCTL_CLI, '-H', `unix://${socket}`, ...args]);
    if (result.code !== 0) throw new Error(`netctl ${args.join(' ')}: ${result.stderr}`);
    return result.stdout.trim();
  };
  const subnets = (name: string) => ok('network', 'inspect', '-f', '{{range .IPAM.Config}}{{.Subnet}} {{end}}', name);

  await ok('network', 'create', 'first');
  t.is(await subnets('first'), '172.19.0.0/16');
  await ok('network', 'create', '--ipv6', 'dual');
  t.is(await subnets('dual'), '172.20.0.0/16 fd00:d0c:0:1::/64');
  // Asked for by name, a subnet the host routes is the operator's choice, as with Docker.
  await ok('network', 'create', '--subnet', '172.17.200.0/24', 'chosen');
  t.is(await subnets('chosen'), '172.17.200.0/24');
});
