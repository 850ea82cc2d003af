/**
 * netctl-cni first in a conflist, Debian's reference plugins after it
 * (bandwidth, portmap from containernetworking-plugins in /usr/lib/cni),
 * run by the small runtime of runtime.ts: version negotiation, prevResult
 * passed on, DEL in reverse. The whole chain runs inside the test's host
 * namespace (where the daemon runs): portmap programs iptables and
 * bandwidth tc where they run, never in the root namespace.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { ApiClient } from '../../src/api/client.js';
import { startDaemon } from '../helpers/daemon.js';
import { addNetns, inNetns, links, removeNetns, run, uniqueName } from '../helpers/kernel.js';
import { waitFor } from '../helpers/wait.js';
import { type Conflist, addAttachment, checkOrDelete, makeRuntime } from './runtime.js';

test.serial('netctl-cni → bandwidth → portmap: a mapped host port reaches the container from outside; DEL through the chain undoes it all', async (t) => {
  const hostNs = uniqueName('cnip');
  const hostNsPath = await addNetns(hostNs);
  const clientNs = uniqueName('cnic');
  const clientNsPath = await addNetns(clientNs);
  const containerNs = uniqueName('cnik');
  const containerNsPath = await addNetns(containerNs);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-cni-chain-'));
  const socket = join(stateDir, 'netctl.sock');
  const daemon = await startDaemon({ netnsPath: hostNsPath, stateDir, socket, args: ['--dns', '127.0.0.1'] });
  const runtime = await makeRuntime(hostNsPath);
  let server: ChildProcess | undefined;
  t.teardown(async () => {
    server?.kill('SIGKILL');
    await daemon.stop('SIGKILL');
    for (const name of [containerNs, clientNs, hostNs]) await removeNetns(name);
    await rm(stateDir, { recursive: true, force: true });
    await runtime.close();
  });

  // The outside world: a namespace joined to the host by a veth on 198.18.9.0/24.
  const hostEnd = uniqueName('cniv');
  for (const args of [
    ['-n', hostNs, 'link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'up0', 'netns', clientNs],
    ['-n', hostNs, 'addr', 'add', '198.18.9.1/24', 'dev', hostEnd],
    ['-n', hostNs, 'link', 'set', hostEnd, 'up'],
    ['-n', clientNs, 'addr', 'add', '198.18.9.2/24', 'dev', 'up0'],
    ['-n', clientNs, 'link', 'set', 'up0', 'up'],
  ]) {
    const result = await run('ip', args);
    t.is(result.code, 0, result.stderr);
  }
  await new ApiClient(`unix://${socket}`).createNetwork({ Name: 'cninet', IPAM: { Config: [{ Subnet: '10.95.0.0/24' }] } });

  const conflist: Conflist = {
    cniVersion: '1.1.0',
    cniVersions: ['0.4.0', '1.0.0', '1.1.0'],
    name: 'cninet',
    plugins: [
      { type: 'netctl-cni', network: 'cninet', host: `unix://${socket}` },
      { type: 'bandwidth', capabilities: { bandwidth: true } },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  };
  const capabilityArgs = {
    portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
    bandwidth: { ingressRate: 100_000_000, ingressBurst: 10_000_000, egressRate: 100_000_000, egressBurst: 10_000_000 },
  };
  const params = { containerId: `ctr-${randomUUID()}`, netns: containerNsPath, ifName: 'eth0' };

  const add = await addAttachment(runtime, conflist, params, capabilityArgs);
  t.is(add.version, '1.0.0', "Debian's plugins speak up to 1.0.0: the highest version every plugin supports");
  for (const { type, run: answer } of add.runs) t.is(answer.code, 0, `${type} ADD: ${answer.stdout}${answer.stderr}`);
  const result = add.last.json;
  const ours = add.runs[0]?.run.json;
  t.deepEqual(result.interfaces.slice(0, 2), ours.interfaces, "the chain passes netctl-cni's interfaces on (bandwidth adds its ifb after them)");
  t.deepEqual(result.ips, ours.ips);
  const containerAddress = (result.ips[0].address as string).split('/')[0] ?? '';
  const hostVeth = result.interfaces[0].name as string;

  // portmap's rules and bandwidth's shaping, where the chain ran.
  const nat = await inNetns(hostNsPath, 'iptables', ['-t', 'nat', '-S']);
  t.is(nat.code, 0, nat.stderr);
  t.regex(nat.stdout, new RegExp(`--dport 8080 -j DNAT --to-destination ${containerAddress.replaceAll('.', '\\.')}:80`));
  const qdiscs = await inNetns(hostNsPath, 'tc', ['qdisc', 'show', 'dev', hostVeth]);
  t.regex(qdiscs.stdout, /qdisc tbf/, 'bandwidth shapes the host-side veth netctl-cni reported');

  server = spawn('nsenter', [`--net=${containerNsPath}`, process.execPath, '-e', "require('http').createServer((q, s) => s.end('container')).listen(80)"], {
    stdio: 'ignore',
  });
  await waitFor('the container listening', async () => ((await inNetns(containerNsPath, 'curl', ['-s', '-m', '1', 'http://127.0.0.1/'])).stdout === 'container' ? true : undefined), 10_000);
  const viaHostPort = await inNetns(clientNsPath, 'curl', ['-s', '-m', '3', 'http://198.18.9.1:8080/']);
  t.is(viaHostPort.stdout, 'container', `outside → host 198.18.9.1:8080 → container:80 (${viaHostPort.stderr})`);

  const check = await checkOrDelete(runtime, 'CHECK', conflist, params, result, capabilityArgs);
  t.deepEqual(check.runs.map((r) => r.type), ['netctl-cni', 'bandwidth', 'portmap']);
  for (const { type, run: answer } of check.runs) {
    if (type === 'portmap' && answer.code !== 0) {
      // Debian's portmap 1.1.1 also checks an ip6tables chain it made only for IPv6 containers (fixed upstream by
      // "Only check ipv6 when an IPv6 is configured"): with it a conflist sets disableCheck, as §1 provides.
      t.regex(answer.json?.msg ?? '', /^could not check ipv6 dnat: chain CNI-DN-\w+ not found in iptables table nat$/);
      continue;
    }
    t.is(answer.code, 0, `${type} CHECK: ${answer.stdout}${answer.stderr}`);
  }

  const del = await checkOrDelete(runtime, 'DEL', conflist, params, result, capabilityArgs);
  t.deepEqual(del.runs.map((r) => r.type), ['portmap', 'bandwidth', 'netctl-cni'], 'DEL runs the chain in reverse');
  for (const { type, run: answer } of del.runs) t.is(answer.code, 0, `${type} DEL: ${answer.stdout}${answer.stderr}`);
  t.notRegex((await inNetns(hostNsPath, 'iptables', ['-t', 'nat', '-S'])).stdout, /DNAT --to-destination/, "portmap's DNAT is gone");
  t.deepEqual((await links(hostNsPath)).filter((l) => l.ifname === hostVeth || l.linkinfo?.info_kind === 'ifb').map((l) => l.ifname), [], 'veth and ifb gone');
  t.deepEqual((await links(containerNsPath)).map((l) => l.ifname), ['lo']);
  t.deepEqual(await new ApiClient(`unix://${socket}`).listSandboxes(), []);
  t.not((await inNetns(clientNsPath, 'curl', ['-s', '-m', '1', 'http://198.18.9.1:8080/'])).stdout, 'container');
  const again = await checkOrDelete(runtime, 'DEL', conflist, params, result, capabilityArgs);
  for (const { type, run: answer } of again.runs) t.is(answer.code, 0, `${type} second DEL: ${answer.stdout}${answer.stderr}`);
});
