/**
 * The routing mesh's rules: golden text, and the whole path built by hand
 * from namespaces of the test's own, with no daemon: a client reaches a
 * task through two hosts, each with its published-port table and its
 * ingress sandbox, and the task answers each through the host it came in
 * by, seeing the client's own address.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import test from 'ava';
import {
  entryMark,
  entryScript,
  publishedScript,
  replyRouteBatch,
  replyScript,
  type PortTargets,
  type ReplyRules,
  subnetOf,
} from '../../src/ingress/mesh-rules.js';
import { ipBatch, rulePriorities } from '../../src/sys/iproute.js';
import { applyNft, listNftRuleset } from '../../src/sys/nft.js';
import { addNetns, inNetns, removeNetns, run, uniqueName } from '../helpers/kernel.js';
import { waitFor } from '../helpers/wait.js';

const PYTHON = '/usr/bin/python3';

const web: PortTargets[] = [
  { protocol: 'tcp', port: 8080, targets: [{ address: '10.0.0.5', port: 80 }, { address: '10.0.0.6', port: 80 }] },
  { protocol: 'udp', port: 5353, targets: [{ address: '10.0.0.5', port: 53 }] },
  { protocol: 'tcp', port: 9090, targets: [] },
];

test('entry marks: the byte 0x4e, then the low 24 bits of the ingress sandbox address', (t) => {
  t.is(entryMark('10.0.0.2'), 0x4e000002);
  t.is(entryMark('10.255.1.200'), 0x4eff01c8);
});

test('the host table: one lookup per packet to a local address, a chain per opened port; a port with no target stays closed', (t) => {
  t.is(
    publishedScript(web),
    [
      'table ip netctl_published {}',
      'delete table ip netctl_published',
      'table ip netctl_published {',
      '  chain prerouting {',
      '    type nat hook prerouting priority -100; policy accept;',
      '    fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap { tcp . 8080 : goto port_tcp_8080, udp . 5353 : goto port_udp_5353 }',
      '  }',
      '  chain output {',
      '    type nat hook output priority -100; policy accept;',
      '    fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap { tcp . 8080 : goto port_tcp_8080, udp . 5353 : goto port_udp_5353 }',
      '  }',
      '  chain port_tcp_8080 {',
      '    meta l4proto tcp dnat ip to numgen inc mod 2 map { 0 : 10.0.0.5 . 80, 1 : 10.0.0.6 . 80 }',
      '  }',
      '  chain port_udp_5353 {',
      '    meta l4proto udp dnat ip to 10.0.0.5:53',
      '  }',
      '}',
      '',
    ].join('\n'),
  );
});

test('hairpin: a target on a bridge of the host gets connections from its own subnet from the host, masqueraded', (t) => {
  t.is(subnetOf('172.18.0.2/16'), '172.18.0.0/16');
  t.is(subnetOf('10.0.1.77/24'), '10.0.1.0/24');
  t.is(subnetOf('10.0.1.77/32'), '10.0.1.77/32');
  const script = publishedScript([{ protocol: 'tcp', port: 8080, targets: [{ address: '172.18.0.2', port: 8080, subnet: '172.18.0.0/16' }] }]);
  t.true(
    script.includes(
      ['  chain postrouting {', '    type nat hook postrouting priority 100; policy accept;', '    ct status dnat ip saddr 172.18.0.0/16 ip daddr 172.18.0.2 masquerade', '  }'].join('\n'),
    ),
    script,
  );
  t.false(publishedScript(web).includes('postrouting'), 'no subnet given, no hairpin');
});

test('nothing to open leaves no table; the entry table matches its own address only', (t) => {
  t.is(publishedScript([]), 'table ip netctl_published {}\ndelete table ip netctl_published\n');
  t.is(publishedScript([{ protocol: 'tcp', port: 1, targets: [] }]), publishedScript([]));
  t.regex(entryScript('172.18.0.3', web), /ip daddr 172\.18\.0\.3 meta l4proto \. th dport vmap/);
  t.notRegex(entryScript('172.18.0.3', web), /hook output/);
});

test('the reply routes: the main table decides all but its default route; marked replies and published UDP ports take the ingress interface', (t) => {
  const rules: ReplyRules = { ifName: 'eth1', gateway: '10.0.0.1', entries: [{ macAddress: '02:42:0a:00:00:02', mark: 0x4e000002 }], udpPorts: [53] };
  t.deepEqual(replyRouteBatch(rules, []), [
    'rule add priority 30100 lookup main suppress_prefixlength 0',
    'rule add priority 30101 fwmark 0x4e000000/0xff000000 lookup 30100',
    'rule add priority 30102 fwmark 0x4d000000/0xff000000 lookup main',
    'rule add priority 30103 ipproto udp sport 53 lookup 30100',
    'route replace default via 10.0.0.1 dev eth1 onlink table 30100',
  ]);
  t.deepEqual(replyRouteBatch(undefined, [30100, 30102]), ['rule del priority 30100', 'rule del priority 30102', 'route flush table 30100']);
  t.deepEqual(replyRouteBatch({ ...rules, entries: [] }, []), [], 'no ingress sandbox anywhere: nothing to route');
});

/** Answers each TCP connection and UDP datagram on port 80 with the address and port it came from. */
const ECHO = `
import socket, threading
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); tcp.bind(('0.0.0.0', 80)); tcp.listen(16)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(('0.0.0.0', 80))
def answer_udp():
    while True:
        _, peer = udp.recvfrom(64); udp.sendto(peer[0].encode(), peer)
threading.Thread(target=answer_udp, daemon=True).start()
print('listening', flush=True)
while True:
    conn, peer = tcp.accept(); conn.sendall(peer[0].encode()); conn.close()
`;

/** Prints the source address of the first datagram to 192.0.9.1:5000, or "nothing". */
const LISTEN = `
import socket
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(('192.0.9.1', 5000)); r.settimeout(5)
print('ready', flush=True)
try:
    print(r.recvfrom(64)[1][0], flush=True)
except OSError as e:
    print('nothing', type(e).__name__, flush=True)
`;

const ASK = `
import socket, sys
proto, address = sys.argv[1], sys.argv[2]
try:
    if proto == 'tcp':
        s = socket.create_connection((address, 8080), timeout=2); print(s.recv(64).decode())
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.sendto(b'?', (address, 8080)); print(s.recvfrom(64)[0].decode())
except OSError as e:
    print('failed', type(e).__name__)
`;

test('the whole path in namespaces: through either host, TCP and UDP reach the task, which sees the client and answers through that host', async (t) => {
  const names = { client: uniqueName('mc'), bridge: uniqueName('mb'), task: uniqueName('mt'), way: uniqueName('mg') } as Record<string, string>;
  const hosts = [1, 2].map((i) => ({ i, host: uniqueName(`mh${i}`), entry: uniqueName(`me${i}`) }));
  const all = [...Object.values(names), ...hosts.flatMap((h) => [h.host, h.entry])];
  let server: ChildProcess | undefined;
  t.teardown(async () => {
    if (server?.pid !== undefined && server.exitCode === null) process.kill(server.pid, 'SIGKILL');
    for (const name of all) await removeNetns(name);
  });
  const ip = async (...args: string[]) => {
    const result = await run('ip', args);
    if (result.code !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
  };
  const path = (name: string) => `/var/run/netns/${name}`;
  const veth = async (a: string, aIf: string, aCidr: string | undefined, b: string, bIf: string, bCidr: string | undefined) => {
    const tmp = uniqueName('v');
    await ip('link', 'add', tmp, 'type', 'veth', 'peer', 'name', `${tmp}p`);
    await ip('link', 'set', tmp, 'netns', a);
    await ip('link', 'set', `${tmp}p`, 'netns', b);
    await ip('-n', a, 'link', 'set', tmp, 'name', aIf, 'up');
    await ip('-n', b, 'link', 'set', `${tmp}p`, 'name', bIf, 'up');
    if (aCidr !== undefined) await ip('-n', a, 'addr', 'add', aCidr, 'dev', aIf);
    if (bCidr !== undefined) await ip('-n', b, 'addr', 'add', bCidr, 'dev', bIf);
  };
  for (const name of all) await addNetns(name);
  // The ingress network: a bridge holding its gateway, as each host's overlay namespace does.
  await ip('-n', names.bridge!, 'link', 'add', 'br0', 'type', 'bridge');
  await ip('-n', names.bridge!, 'addr', 'add', '10.0.0.1/24', 'dev', 'br0');
  await ip('-n', names.bridge!, 'link', 'set', 'br0', 'up');
  // The task: eth1 on the ingress network, eth0 to its gateway bridge with the default route, as netctl wires it.
  await veth(names.task!, 'eth1', '10.0.0.5/24', names.bridge!, 'tport', undefined);
  await ip('-n', names.bridge!, 'link', 'set', 'tport', 'master', 'br0');
  await veth(names.task!, 'eth0', '172.20.0.2/24', names.way!, 'gw0', '172.20.0.1/24');
  await ip('-n', names.task!, 'route', 'add', 'default', 'via', '172.20.0.1');
  await ip('-n', names.way!, 'addr', 'add', '192.0.9.1/32', 'dev', 'lo');
  const entries = [];
  for (const { i, host, entry } of hosts) {
    await veth(names.client!, `c${i}`, `192.0.${i + 1}.2/24`, host, 'uplink', `192.0.${i + 1}.1/24`);
    await veth(host, 'gwbridge', `172.18.${i}.1/24`, entry, 'eth0', `172.18.${i}.2/24`);
    await ip('-n', entry, 'route', 'add', 'default', 'via', `172.18.${i}.1`);
    await veth(entry, 'eth1', `10.0.0.${i + 1}/24`, names.bridge!, `eport${i}`, undefined);
    await ip('-n', names.bridge!, 'link', 'set', `eport${i}`, 'master', 'br0');
    for (const ns of [host, entry]) await inNetns(path(ns), 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    const ports: PortTargets[] = (['tcp', 'udp'] as const).map((protocol) => ({ protocol, port: 8080, targets: [{ address: `172.18.${i}.2`, port: 8080 }] }));
    await applyNft(path(host), publishedScript(ports));
    await applyNft(path(entry), entryScript(`172.18.${i}.2`, ports.map((p) => ({ ...p, targets: [{ address: '10.0.0.5', port: 80 }] }))));
    const link = JSON.parse((await run('ip', ['-n', entry, '-j', 'link', 'show', 'eth1'])).stdout) as { address: string }[];
    entries.push({ macAddress: link[0]?.address ?? '', mark: entryMark(`10.0.0.${i + 1}`) });
  }
  server = spawn('nsenter', [`--net=${path(names.task!)}`, PYTHON, '-c', ECHO], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    server?.stdout?.once('data', () => resolve());
    server?.once('exit', (code) => reject(new Error(`the task server exited ${code}`)));
  });
  const ask = async (proto: 'tcp' | 'udp', address: string) => (await inNetns(path(names.client!), PYTHON, ['-c', ASK, proto, address])).stdout.trim();

  // Without reply rules the answer follows the task's default route, away from the host that DNATed it.
  t.is(await ask('tcp', '192.0.2.1'), 'failed TimeoutError', 'the reply rules are what makes it work');

  const rules: ReplyRules = { ifName: 'eth1', gateway: '10.0.0.1', entries, udpPorts: [80, 81] };
  await applyNft(path(names.task!), replyScript(rules));
  await ipBatch(path(names.task!), replyRouteBatch(rules, []));
  for (const { i } of hosts) {
    for (const proto of ['tcp', 'udp'] as const) {
      t.is(await ask(proto, `192.0.${i + 1}.1`), `192.0.${i + 1}.2`, `${proto} through host ${i}: the task saw the client`);
    }
  }
  t.true((await listNftRuleset(path(names.task!))).includes('netdev netctl_ingress'));
  // The task's own datagram from a published UDP port to elsewhere leaves by its default route, from its address there.
  const listener = spawn('nsenter', [`--net=${path(names.way!)}`, PYTHON, '-c', LISTEN], { stdio: ['ignore', 'pipe', 'inherit'] });
  let heard = '';
  listener.stdout.setEncoding('utf8').on('data', (chunk: string) => (heard += chunk));
  const listened = new Promise<void>((resolve) => listener.once('exit', () => resolve()));
  await waitFor('the listener', () => (heard.startsWith('ready') ? true : undefined), 10_000);
  await inNetns(path(names.task!), PYTHON, ['-c', "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 81)); s.sendto(b'x', ('192.0.9.1', 5000))"]);
  await listened;
  t.is(heard.split('\n')[1], '172.20.0.2', 'a new UDP flow from a published port went out by the gateway bridge');

  // Taken away, nothing of it stays behind.
  const present = (await rulePriorities(path(names.task!))).filter((p) => p >= 30100 && p < 30300);
  t.deepEqual(present, [30100, 30101, 30102, 30103, 30104]);
  await applyNft(path(names.task!), replyScript(undefined));
  await ipBatch(path(names.task!), replyRouteBatch(undefined, present));
  t.false((await listNftRuleset(path(names.task!))).includes('netctl_ingress'));
  t.deepEqual((await rulePriorities(path(names.task!))).filter((p) => p >= 30100 && p < 30300), []);
  await waitFor('TCP to fail again without the rules', async () => ((await ask('tcp', '192.0.3.1')).startsWith('failed') ? true : undefined), 20_000);
});
