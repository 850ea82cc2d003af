/**
 * The embedded DNS as a sandbox sees it: `dig` inside sandboxes against
 * 127.0.0.11 (and through the resolv.conf netctl writes), a dnsmasq in its
 * own namespace as the upstream, and sandboxes across hosts on an overlay.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { makeCluster, type SimHost } from '../helpers/cluster.js';
import { NETCTL_CLI, type RunningDaemon, startDaemon } from '../helpers/daemon.js';
import { addNetns, inNetns, removeNetns, run, uniqueName } from '../helpers/kernel.js';

const cli = NETCTL_CLI;
const nsPath = (name: string) => `/var/run/netns/${name}`;

/** `dig` inside a sandbox; returns the status and the answers (+short style). */
async function dig(sandbox: string, ...args: string[]): Promise<{ status: string; answers: string[] }> {
  const result = await inNetns(nsPath(sandbox), 'dig', ['@127.0.0.11', '+tries=1', '+time=3', ...args]);
  const status = /status: ([A-Z]+)/.exec(result.stdout)?.[1] ?? `no reply (${result.code}) ${result.stdout}${result.stderr}`;
  const answers: string[] = [];
  const section = result.stdout.split(';; ANSWER SECTION:\n')[1]?.split('\n\n')[0] ?? '';
  for (const line of section.split('\n')) {
    const fields = line.split(/\s+/);
    if (fields.length >= 5) answers.push(fields.slice(4).join(' '));
  }
  return { status, answers: answers.sort() };
}

function ipOf(cidr: string): string {
  return cidr.split('/')[0] ?? '';
}

test.serial('bridge networks: names, aliases, name.network, PTR, isolation, upstream, TCP, live updates, garbage', async (t) => {
  const hostNs = uniqueName('d');
  const upstreamNs = uniqueName('q');
  const hostNsPath = await addNetns(hostNs);
  const upstreamNsPath = await addNetns(upstreamNs);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-dns-'));
  const socket = join(stateDir, 'netctl.sock');
  const sandboxes: string[] = [];
  let daemon: RunningDaemon | undefined;
  let dnsmasq: ChildProcess | undefined;
  t.teardown(async () => {
    await daemon?.stop('SIGKILL');
    if (dnsmasq !== undefined && dnsmasq.exitCode === null) {
      const exited = new Promise((resolve) => dnsmasq?.once('exit', resolve));
      dnsmasq.kill('SIGKILL');
      await exited;
    }
    for (const name of sandboxes) await removeNetns(name);
    await removeNetns(upstreamNs);
    await removeNetns(hostNs);
    await rm(stateDir, { recursive: true, force: true });
  });

  // The upstream: dnsmasq answering one external name, in its own namespace joined to the host by a veth.
  const prefix = `198.19.${process.pid % 250}`;
  for (const args of [
    ['-n', hostNs, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up0', 'netns', upstreamNs],
    ['-n', hostNs, 'addr', 'add', `${prefix}.1/24`, 'dev', 'up0'],
    ['-n', hostNs, 'link', 'set', 'up0', 'up'],
    ['-n', upstreamNs, 'addr', 'add', `${prefix}.2/24`, 'dev', 'up0'],
    ['-n', upstreamNs, 'link', 'set', 'up0', 'up'],
  ]) {
    const result = await run('ip', args);
    t.is(result.code, 0, result.stderr);
  }
  dnsmasq = spawn(
    'nsenter',
    [`--net=${upstreamNsPath}`, 'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', `--listen-address=${prefix}.2`, '--bind-interfaces', '--address=/external.test/192.0.2.55', '--address=/#/', '--pid-file='],
    { stdio: 'ignore' },
  );
  daemon = await startDaemon({ netnsPath: hostNsPath, stateDir, socket, args: ['--dns', `${prefix}.2`] });
  const netctl = async (...args: string[]) => {
    const result = await run(process.execPath, [cli, '-H', `unix://${socket}`, ...args]);
    t.is(result.code, 0, `netctl ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  const sandbox = async (base: string) => {
    const name = uniqueName(base);
    sandboxes.push(name);
    await netctl('sandbox', 'create', name);
    return name;
  };
  const address = async (network: string, name: string) =>
    ipOf(JSON.parse(await netctl('sandbox', 'inspect', name))[0].Networks[(JSON.parse(await netctl('network', 'inspect', network))[0] as { Id: string }).Id].IPv4Address);

  await netctl('network', 'create', '--subnet', '10.81.0.0/24', 'front');
  await netctl('network', 'create', '--subnet', '10.82.0.0/24', 'back');
  await netctl('network', 'create', '--subnet', '10.83.0.0/24', '--internal', 'inner');
  const a = await sandbox('a');
  const b = await sandbox('b');
  const c = await sandbox('c');
  const i = await sandbox('i');
  await netctl('network', 'connect', 'front', a);
  await netctl('network', 'connect', '--alias', 'db', '--alias', 'primary', 'front', b);
  await netctl('network', 'connect', 'back', c);
  await netctl('network', 'connect', 'inner', i);
  const bIp = await address('front', b);
  const cIp = await address('back', c);

  t.deepEqual(await dig(a, b), { status: 'NOERROR', answers: [bIp] });
  t.deepEqual(await dig(a, 'db'), { status: 'NOERROR', answers: [bIp] }, 'alias');
  t.deepEqual(await dig(a, `${b}.front`.toUpperCase()), { status: 'NOERROR', answers: [bIp] }, 'name.network, any case');
  t.deepEqual(await dig(a, '-x', bIp), { status: 'NOERROR', answers: [`${b}.front.`] }, 'reverse lookup');
  t.is((await dig(a, c)).status, 'NXDOMAIN', 'a name on a network a does not share');
  t.is((await dig(c, b)).status, 'NXDOMAIN');
  t.deepEqual(await dig(c, c), { status: 'NOERROR', answers: [cIp] }, 'its own name');
  t.deepEqual(await dig(a, 'external.test'), { status: 'NOERROR', answers: ['192.0.2.55'] }, 'forwarded to the upstream');
  t.deepEqual(await dig(a, '+tcp', b), { status: 'NOERROR', answers: [bIp] }, 'over TCP');
  t.is((await dig(i, 'external.test')).status, 'SERVFAIL', 'a sandbox only on an internal network is not forwarded');
  t.deepEqual((await dig(a, b, 'AAAA')).answers, [], 'no IPv6 address: NODATA');

  // The resolv.conf netctl writes makes plain lookups work through `ip netns exec`.
  const resolvConf = (JSON.parse(await netctl('sandbox', 'inspect', a)) as { ResolvConfPath: string }[])[0]?.ResolvConfPath ?? '';
  t.is(resolvConf, `/etc/netns/${a}/resolv.conf`);
  t.regex(readFileSync(resolvConf, 'utf8'), /^nameserver 127\.0\.0\.11$/m);
  const plain = await run('ip', ['netns', 'exec', a, 'dig', '+short', '+search', b]);
  t.is(plain.stdout.trim(), bIp);

  // Joins and leaves take effect at once.
  const d = await sandbox('d');
  await netctl('network', 'connect', 'front', d);
  t.is((await dig(a, d)).status, 'NOERROR', 'resolvable as soon as connect returns');
  await netctl('network', 'disconnect', 'front', d);
  t.is((await dig(a, d)).status, 'NXDOMAIN', 'gone as soon as disconnect returns');

  // Garbage to the listener, then a real query.
  const garbage = [
    Buffer.alloc(0),
    Buffer.from('1234', 'hex'),
    Buffer.from('abcd0100000100000000000003777777c00c0000010001', 'hex'), // label pointer loop
    Buffer.from('abcd0100ffff00000000000001610000010001', 'hex'), // qdcount 65535
    ...Array.from({ length: 200 }, (_, n) => randomBytes(1 + (n % 300))),
  ];
  const script =
    "const s=require('dgram').createSocket('udp4');const p=JSON.parse(process.argv[1]).map(b=>Buffer.from(b,'base64'));let got=0;" +
    "s.on('message',m=>{if(m.length>=4&&(m[3]&15)===1)got++;});let i=0;const next=()=>{if(i>=p.length){setTimeout(()=>{console.log(got);s.close()},500);return;}s.send(p[i++],53,'127.0.0.11',next)};next();";
  const sent = await inNetns(nsPath(a), process.execPath, ['-e', script, JSON.stringify(garbage.map((g) => g.toString('base64')))]);
  t.is(sent.code, 0, sent.stderr);
  const formerrs = Number(sent.stdout.trim());
  t.log(`${garbage.length} malformed queries: ${formerrs} FORMERR replies, the rest dropped or otherwise refused`);
  t.true(formerrs >= 2, 'the loop and the huge count got FORMERR');
  t.deepEqual(await dig(a, b), { status: 'NOERROR', answers: [bIp] }, 'still answering');

  // Removing a sandbox removes its resolv.conf.
  await netctl('sandbox', 'rm', a);
  t.false(existsSync(resolvConf));
});

test.serial('overlay: sandboxes resolve each other across hosts', async (t) => {
  const cluster = await makeCluster(2);
  t.teardown(() => cluster.destroy());
  const [h1, h2] = cluster.hosts as [SimHost, SimHost];
  for (const host of cluster.hosts) await cluster.startDaemon(host);
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '--subnet', '10.84.0.0/24', 'ov');
  const a = cluster.sandboxName('a');
  const b = cluster.sandboxName('b');
  await cluster.ok(h1, 'sandbox', 'create', a);
  await cluster.ok(h1, 'network', 'connect', 'ov', a);
  await cluster.ok(h2, 'sandbox', 'create', b);
  await cluster.ok(h2, 'network', 'connect', '--ip', '10.84.0.50', '--alias', 'api', 'ov', b);
  const deadline = Date.now() + 5000;
  let answer = await dig(a, b);
  while (answer.status !== 'NOERROR' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    answer = await dig(a, b);
  }
  t.deepEqual(answer, { status: 'NOERROR', answers: ['10.84.0.50'] });
  t.deepEqual(await dig(a, 'api.ov'), { status: 'NOERROR', answers: ['10.84.0.50'] });
  t.deepEqual(await dig(a, '-x', '10.84.0.50'), { status: 'NOERROR', answers: [`${b}.ov.`] });
  await cluster.ok(h2, 'network', 'disconnect', 'ov', b);
  // Unknown to netctl now, the name goes to the upstream, which does not answer here: SERVFAIL, as Docker says.
  const gone = Date.now() + 5000;
  while ((await dig(a, b)).status === 'NOERROR' && Date.now() < gone) await new Promise((resolve) => setTimeout(resolve, 20));
  t.deepEqual(await dig(a, b), { status: 'SERVFAIL', answers: [] }, 'a leave on host2 is seen by host1');
});
