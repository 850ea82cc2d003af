/**
 * A reboot as the daemon sees it: every namespace is gone (the host's one,
 * with its bridges, and the sandboxes'), the state directory stays. The
 * daemon makes the sandboxes' namespaces again, wires their endpoints and
 * answers names in them.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { NETCTL_CLI, startDaemon } from '../helpers/daemon.js';
import { addNetns, inNetns, pings, removeNetns, run, uniqueName } from '../helpers/kernel.js';

test.serial('after a reboot the sandboxes get their namespaces, addresses and embedded DNS back', async (t) => {
  const hostNs = uniqueName('r');
  let hostNsPath = await addNetns(hostNs);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-reboot-'));
  const socket = join(stateDir, 'netctl.sock');
  const [a, b] = [uniqueName('ra'), uniqueName('rb')];
  const args = ['--dns', '127.0.0.1'];
  let daemon = await startDaemon({ netnsPath: hostNsPath, stateDir, socket, args });
  t.teardown(async () => {
    await daemon.stop('SIGKILL');
    for (const name of [a, b]) await run(process.execPath, [NETCTL_CLI, '-H', `unix://${socket}`, 'sandbox', 'rm', name]);
    for (const name of [a, b, hostNs]) await removeNetns(name);
    await rm(stateDir, { recursive: true, force: true });
  });
  const ok = async (...command: string[]) => {
    const result = await run(process.execPath, [NETCTL_CLI, '-H', `unix://${socket}`, ...command]);
    t.is(result.code, 0, `netctl ${command.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  await ok('network', 'create', '--subnet', '10.66.0.0/24', 'web');
  for (const name of [a, b]) {
    await ok('sandbox', 'create', name);
    await ok('network', 'connect', 'web', name);
  }

  await daemon.stop('SIGKILL');
  for (const name of [a, b, hostNs]) await removeNetns(name);
  hostNsPath = await addNetns(hostNs);
  daemon = await startDaemon({ netnsPath: hostNsPath, stateDir, socket, args });

  for (const name of [a, b]) t.true(existsSync(`/var/run/netns/${name}`), `${name} has a namespace again`);
  const bAddress = (await ok('network', 'inspect', '-f', `{{range .Containers}}{{if eq .Name "${b}"}}{{.IPv4Address}}{{end}}{{end}}`, 'web')).trim();
  t.is(bAddress, '10.66.0.3/24');
  t.true(await pings(`/var/run/netns/${a}`, '10.66.0.3'), 'a reaches b again');
  const dig = await inNetns(`/var/run/netns/${a}`, 'dig', ['@127.0.0.11', '+short', '+tries=1', '+time=3', b]);
  t.is(dig.stdout.trim(), '10.66.0.3', `dig ${b} in ${a}: ${dig.stdout}${dig.stderr}`);
  t.regex(readFileSync(`/etc/netns/${a}/resolv.conf`, 'utf8'), /^# netctl: [^\n]*\nnameserver 127\.0\.0\.11\n/);
});
