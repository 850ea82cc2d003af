/**
 * The paths the overlay benchmark compares, each brought up on a fresh
 * two-host testbed. `up` returns where iperf3's server and client run, the
 * address the client dials, and the processes that move the packets (whose
 * CPU time is read), or none when the kernel moves them. Every contender's
 * overlay is 10.77.0.0/24 on its own testbed; nothing reaches beyond the
 * underlay bridge.
 */
import { generateKeyPairSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, uniqueName } from '../test/helpers/kernel.js';
import { compile } from './harness.js';
import type { BenchHost, Spawned, Testbed } from './testbed.js';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const SUBNET = '10.77.0';

export interface Tunnel {
  /** Namespace paths iperf3's server and client run in. */
  readonly serverNsPath: string;
  readonly clientNsPath: string;
  /** Overlay address of the server side. */
  readonly serverAddress: string;
  /** The user-space processes carrying the traffic, both ends; empty for kernel paths. */
  readonly processes: readonly Spawned[];
  /** Wait this long after the first ping gets through before measuring. */
  readonly settleMs?: number;
}

export interface Contender {
  readonly id: string;
  readonly label: string;
  /** Programs that must be installed; a missing one is reported instead of figures. */
  readonly needs: readonly string[];
  readonly etcd?: boolean;
  readonly up: (testbed: Testbed) => Promise<Tunnel>;
}

async function must(command: string, args: readonly string[], timeoutMs = 30_000): Promise<string> {
  const result = await run(command, args, { timeoutMs });
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')}: ${(result.stderr || result.stdout).trim().slice(0, 400)}`);
  return result.stdout;
}

/** Waits until a spawned process prints `marker`; throws with its output if it exits first. */
async function waitFor(spawned: Spawned, marker: string, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!spawned.output().includes(marker)) {
    if (spawned.exited()) throw new Error(`${what} exited: ${spawned.output().trim().slice(-600)}`);
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs} ms: ${spawned.output().trim().slice(-600)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A sandbox namespace on a host, joined by a veth to `bridge` in the host namespace. */
async function bridgedSandbox(testbed: Testbed, host: BenchHost, bridge: string, mtu: number): Promise<string> {
  const sandbox = await testbed.addNamespace(`s${host.index}`);
  const port = uniqueName('v');
  await testbed.ip('-n', host.name, 'link', 'add', port, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', String(mtu), 'netns', sandbox.name);
  await testbed.ip('-n', host.name, 'link', 'set', port, 'master', bridge, 'up');
  await testbed.ip('-n', sandbox.name, 'addr', 'add', `${SUBNET}.${host.index}/24`, 'dev', 'eth0');
  await testbed.ip('-n', sandbox.name, 'link', 'set', 'eth0', 'up');
  return sandbox.netnsPath;
}

/** Gives a host's tunnel interface its overlay address and brings it up. */
async function addressTunnel(testbed: Testbed, host: BenchHost, ifName: string): Promise<void> {
  await testbed.ip('-n', host.name, 'addr', 'add', `${SUBNET}.${host.index}/24`, 'dev', ifName);
  await testbed.ip('-n', host.name, 'link', 'set', ifName, 'up');
}

async function waitForInterface(host: BenchHost, ifName: string, spawned: Spawned, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while ((await run('ip', ['-n', host.name, 'link', 'show', ifName])).code !== 0) {
    if (spawned.exited()) throw new Error(`${what} exited: ${spawned.output().trim().slice(-600)}`);
    if (Date.now() > deadline) throw new Error(`${what} made no ${ifName}: ${spawned.output().trim().slice(-600)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const wire: Contender = {
  id: 'veth',
  label: 'plain veth (the wire)',
  needs: [],
  async up(testbed) {
    const [h1, h2] = testbed.hosts;
    return { serverNsPath: h2.netnsPath, clientNsPath: h1.netnsPath, serverAddress: h2.address, processes: [] };
  },
};

/**
 * Each host: a bridge br0 with the port `attach` makes (it returns its name)
 * at MTU 1450 on it, and a sandbox bridged there: the kernel vxlan's shape,
 * Docker's overlay path, with any device in the vxlan's place.
 */
async function bridgedOverlay(testbed: Testbed, attach: (host: BenchHost, peer: BenchHost) => Promise<string>): Promise<[string, string]> {
  const sandboxes: string[] = [];
  for (const host of testbed.hosts) {
    const peer = testbed.hosts[2 - host.index] as BenchHost;
    await testbed.ip('-n', host.name, 'link', 'add', 'br0', 'type', 'bridge');
    await testbed.ip('-n', host.name, 'link', 'set', 'br0', 'up');
    const port = await attach(host, peer);
    await testbed.ip('-n', host.name, 'link', 'set', port, 'mtu', '1450', 'master', 'br0', 'up');
    sandboxes.push(await bridgedSandbox(testbed, host, 'br0', 1450));
  }
  return sandboxes as [string, string];
}

/** Docker's overlay path built by hand: sandbox veth → bridge → kernel vxlan, MTU 1450, in each host namespace. */
const kernelVxlan: Contender = {
  id: 'kernel-vxlan',
  label: 'kernel vxlan',
  needs: [],
  async up(testbed) {
    const [client, server] = await bridgedOverlay(testbed, async (host, peer) => {
      await testbed.ip(
        '-n', host.name, 'link', 'add', 'vx0', 'type', 'vxlan', 'id', '4096',
        'local', host.address, 'remote', peer.address, 'dstport', '4789', 'dev', 'eth0',
      );
      return 'vx0';
    });
    return { serverNsPath: server, clientNsPath: client, serverAddress: `${SUBNET}.2`, processes: [] };
  },
};

/**
 * The floor of any user-space VTEP here: bench/vtep-floor.c, one frame per
 * wake-up and per system call, no table, no batching, on the kernel vxlan's
 * shape (sandbox veth → bridge → its TAP). Its round trip over the kernel
 * vxlan's is what leaving the kernel costs on this machine.
 */
const vtepFloor: Contender = {
  id: 'vtep-floor',
  label: 'minimal C VTEP (the user-space floor)',
  needs: ['cc'],
  async up(testbed) {
    const binary = await compile(await testbed.tempDir('floor'), 'vtep-floor');
    const processes: Spawned[] = [];
    const [client, server] = await bridgedOverlay(testbed, async (host, peer) => {
      const vtep = testbed.spawnIn(host.netnsPath, binary, ['tap0', peer.address, '4789', '4096']);
      processes.push(vtep);
      await waitFor(vtep, 'ready', 'vtep-floor');
      return 'tap0';
    });
    return { serverNsPath: server, clientNsPath: client, serverAddress: `${SUBNET}.2`, processes };
  },
};

/** Two netctl daemons sharing etcd, one overlay network (with `createOptions`), a sandbox on each host. */
function netctlOverlay(id: string, label: string, createOptions: readonly string[], daemonOptions: readonly string[] = []): Contender {
  return {
    id,
    label,
    needs: [],
    etcd: true,
    async up(testbed) {
      const cli = join(root, 'bin', 'netctl.js');
      const daemons: Spawned[] = [];
      const sockets: string[] = [];
      for (const host of testbed.hosts) {
        const stateDir = await testbed.tempDir(`${id}${host.index}`);
        const socket = join(stateDir, 'netctl.sock');
        sockets.push(socket);
        const daemon = testbed.spawnIn(host.netnsPath, process.execPath, [
          cli, 'daemon', '--state-dir', stateDir, '--socket', socket,
          '--store', (testbed.etcdUrl ?? '').replace(/^http:/, 'etcd:'),
          '--advertise-addr', host.address, '--node-name', `host${host.index}`,
          // Nothing listens there: no query leaves the testbed.
          '--dns', '127.0.0.1',
          ...daemonOptions,
        ]);
        daemons.push(daemon);
        await waitFor(daemon, 'listening', `netctl daemon on host${host.index}`, 30_000);
      }
      const ctl = (index: number, ...args: string[]) => must(process.execPath, [cli, '-H', `unix://${sockets[index - 1]}`, ...args]);
      await ctl(1, 'network', 'create', '-d', 'overlay', ...createOptions, '--subnet', `${SUBNET}.0/24`, 'bench');
      const sandboxes: { nsPath: string; address: string }[] = [];
      for (const host of testbed.hosts) {
        const name = uniqueName(`n${host.index}`);
        testbed.adoptNamespace(name);
        await ctl(host.index, 'sandbox', 'create', name);
        await ctl(host.index, 'network', 'connect', 'bench', name);
        const template = `{{range .Containers}}{{if eq .Name "${name}"}}{{.IPv4Address}}{{end}}{{end}}`;
        const address = (await ctl(host.index, 'network', 'inspect', '-f', template, 'bench')).trim().split('/')[0] ?? '';
        if (address === '') throw new Error(`netctl gave ${name} no address`);
        sandboxes.push({ nsPath: `/var/run/netns/${name}`, address });
      }
      const [client, server] = sandboxes as [{ nsPath: string }, { nsPath: string; address: string }];
      return { serverNsPath: server.nsPath, clientNsPath: client.nsPath, serverAddress: server.address, processes: daemons };
    },
  };
}

const netctl = netctlOverlay('netctl', 'netctl overlay', []);
/** The same with `-o encrypted`: every frame sealed with AES-256-GCM (ESP) in the addon. */
const netctlEncrypted = netctlOverlay('netctl-encrypted', 'netctl encrypted (AES-256-GCM)', ['-o', 'encrypted']);
/** Every frame through the VTEP in TypeScript, as before the fast path: the other half of its before/after pairs. */
const netctlSlow = netctlOverlay('netctl-no-fast-path', 'netctl overlay, --fast-path=false', [], ['--fast-path=false']);

/** wg's base64 keys from a Node x25519 pair (its JWK holds the raw 32 bytes, base64url). */
function wireguardKeys(): { privateKey: string; publicKey: string } {
  const { privateKey } = generateKeyPairSync('x25519');
  const jwk = privateKey.export({ format: 'jwk' });
  const b64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64url').toString('base64');
  return { privateKey: b64(jwk.d), publicKey: b64(jwk.x) };
}

const wireguardGo: Contender = {
  id: 'wireguard-go',
  label: 'wireguard-go',
  needs: ['wireguard-go', 'wg'],
  async up(testbed) {
    const dir = await testbed.tempDir('wg');
    const keys = [wireguardKeys(), wireguardKeys()];
    const processes: Spawned[] = [];
    const names: string[] = [];
    for (const host of testbed.hosts) {
      // The UAPI socket lives in /var/run/wireguard/NAME.sock, shared by all namespaces: the name must be unique.
      const name = uniqueName('wg');
      names.push(name);
      testbed.adoptPath(`/var/run/wireguard/${name}.sock`);
      const wg = testbed.spawnIn(host.netnsPath, 'wireguard-go', ['-f', name], { WG_PROCESS_FOREGROUND: '1' });
      processes.push(wg);
      await waitForInterface(host, name, wg, 'wireguard-go');
      const deadline = Date.now() + 10_000;
      while (!existsSync(`/var/run/wireguard/${name}.sock`)) {
        if (Date.now() > deadline) throw new Error(`wireguard-go made no UAPI socket: ${wg.output()}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    for (const host of testbed.hosts) {
      const me = keys[host.index - 1] as { privateKey: string };
      const peer = testbed.hosts[2 - host.index] as BenchHost;
      const keyFile = join(dir, `host${host.index}.key`);
      await writeFile(keyFile, `${me.privateKey}\n`, { mode: 0o600 });
      const name = names[host.index - 1] ?? '';
      await must('nsenter', [
        `--net=${host.netnsPath}`, 'wg', 'set', name, 'listen-port', '51820', 'private-key', keyFile,
        'peer', keys[peer.index - 1]?.publicKey ?? '', 'endpoint', `${peer.address}:51820`, 'allowed-ips', `${SUBNET}.${peer.index}/32`,
      ]);
      await addressTunnel(testbed, host, name);
    }
    const [h1, h2] = testbed.hosts;
    return { serverNsPath: h2.netnsPath, clientNsPath: h1.netnsPath, serverAddress: `${SUBNET}.2`, processes };
  },
};

/** tinc 1.0 in switch mode (TAP); `noCipher` sets Cipher and Digest to none. */
function tinc(noCipher: boolean): Contender {
  return {
    id: noCipher ? 'tinc-nocipher' : 'tinc',
    label: noCipher ? 'tinc 1.0 (no cipher)' : 'tinc 1.0',
    needs: ['tincd'],
    async up(testbed) {
      const dir = await testbed.tempDir('tinc');
      const hostFiles: string[] = [];
      const privateKeys: string[] = [];
      for (const host of testbed.hosts) {
        const { publicKey, privateKey } = generateKeyPairSync('rsa', {
          modulusLength: 2048,
          publicKeyEncoding: { type: 'pkcs1', format: 'pem' },
          privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
        });
        privateKeys.push(privateKey);
        const cipher = noCipher ? 'Cipher = none\nDigest = none\n' : '';
        hostFiles.push(`Address = ${host.address}\nPort = 655\n${cipher}\n${publicKey}`);
      }
      const processes: Spawned[] = [];
      for (const host of testbed.hosts) {
        const conf = join(dir, `host${host.index}`);
        await mkdir(join(conf, 'hosts'), { recursive: true });
        const ifName = uniqueName('tc');
        const connectTo = host.index === 2 ? 'ConnectTo = host1\n' : '';
        await writeFile(
          join(conf, 'tinc.conf'),
          `Name = host${host.index}\nMode = switch\nInterface = ${ifName}\nAddressFamily = ipv4\nBindToAddress = ${host.address}\nPort = 655\n${connectTo}`,
        );
        await writeFile(join(conf, 'rsa_key.priv'), privateKeys[host.index - 1] ?? '', { mode: 0o600 });
        for (const [i, text] of hostFiles.entries()) await writeFile(join(conf, 'hosts', `host${i + 1}`), text);
        await writeFile(join(conf, 'tinc-up'), `#!/bin/sh\nip addr add ${SUBNET}.${host.index}/24 dev "$INTERFACE"\nip link set "$INTERFACE" up\n`);
        await chmod(join(conf, 'tinc-up'), 0o755);
        // -D: stay in the foreground, so the PID is tincd's; its own pidfile instead of the shared /var/run/tinc.pid.
        const tincd = testbed.spawnIn(host.netnsPath, 'tincd', ['-c', conf, '-D', '-d', '1', `--pidfile=${join(conf, 'tinc.pid')}`]);
        processes.push(tincd);
        await waitForInterface(host, ifName, tincd, 'tincd');
      }
      const [h1, h2] = testbed.hosts;
      // tinc sends frames over its TCP meta-connection until its path-MTU probe settles (about 8 s).
      return { serverNsPath: h2.netnsPath, clientNsPath: h1.netnsPath, serverAddress: `${SUBNET}.2`, processes, settleMs: 12_000 };
    },
  };
}

/** OpenVPN 2.6, TAP, peer-to-peer with TLS (EC certificates made by openssl), AES-256-GCM, no DCO. */
const openvpn: Contender = {
  id: 'openvpn',
  label: 'OpenVPN 2.6 (TAP, AES-256-GCM)',
  needs: ['openvpn', 'openssl'],
  async up(testbed) {
    const dir = await testbed.tempDir('ovpn');
    const f = (name: string) => join(dir, name);
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await must('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-subj', '/CN=netctl-bench-ca', '-days', '2']);
    for (const host of testbed.hosts) {
      const n = `host${host.index}`;
      await must('openssl', ['req', ...ec, '-keyout', f(`${n}.key`), '-out', f(`${n}.csr`), '-subj', `/CN=${n}`]);
      await must('openssl', ['x509', '-req', '-in', f(`${n}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${n}.crt`), '-days', '2']);
    }
    const processes: Spawned[] = [];
    for (const host of testbed.hosts) {
      const peer = testbed.hosts[2 - host.index] as BenchHost;
      const n = `host${host.index}`;
      const ifName = uniqueName('ov');
      const ovpn = testbed.spawnIn(host.netnsPath, 'openvpn', [
        '--dev', ifName, '--dev-type', 'tap', '--proto', 'udp',
        '--local', host.address, '--lport', '1194', '--remote', peer.address, '--rport', '1194',
        host.index === 1 ? '--tls-server' : '--tls-client',
        '--ca', f('ca.crt'), '--cert', f(`${n}.crt`), '--key', f(`${n}.key`), '--dh', 'none',
        '--data-ciphers', 'AES-256-GCM', '--disable-dco',
        '--ifconfig', `${SUBNET}.${host.index}`, '255.255.255.0',
        '--script-security', '1', '--verb', '3',
      ]);
      processes.push(ovpn);
    }
    for (const [i, ovpn] of processes.entries()) {
      await waitFor(ovpn, 'Initialization Sequence Completed', `openvpn on host${i + 1}`, 30_000);
      // The figures are meant for AES-256-GCM; a silently negotiated fallback would mislabel them.
      if (!/Data Channel: cipher 'AES-256-GCM'/i.test(ovpn.output())) throw new Error(`openvpn on host${i + 1} did not use AES-256-GCM: ${ovpn.output().slice(-600)}`);
    }
    const [h1, h2] = testbed.hosts;
    return { serverNsPath: h2.netnsPath, clientNsPath: h1.netnsPath, serverAddress: `${SUBNET}.2`, processes };
  },
};

/** nebula with its own CA, a lighthouse on host 1 reached only by its underlay address, tun MTU 1300. */
const nebula: Contender = {
  id: 'nebula',
  label: 'nebula',
  needs: ['nebula', 'nebula-cert'],
  async up(testbed) {
    const dir = await testbed.tempDir('nebula');
    const f = (name: string) => join(dir, name);
    await must('nebula-cert', ['ca', '-name', 'netctl-bench', '-duration', '48h', '-out-crt', f('ca.crt'), '-out-key', f('ca.key')]);
    const [h1] = testbed.hosts;
    const processes: Spawned[] = [];
    for (const host of testbed.hosts) {
      const n = `host${host.index}`;
      await must('nebula-cert', [
        'sign', '-name', n, '-ip', `${SUBNET}.${host.index}/24`, '-ca-crt', f('ca.crt'), '-ca-key', f('ca.key'),
        '-out-crt', f(`${n}.crt`), '-out-key', f(`${n}.key`),
      ]);
      const ifName = uniqueName('nb');
      const lighthouse = host.index === 1;
      const any = [{ port: 'any', proto: 'any', host: 'any' }];
      // JSON is YAML; nebula reads it as its config.
      const config = {
        pki: { ca: f('ca.crt'), cert: f(`${n}.crt`), key: f(`${n}.key`) },
        static_host_map: { [`${SUBNET}.1`]: [`${h1.address}:4242`] },
        lighthouse: { am_lighthouse: lighthouse, interval: 60, hosts: lighthouse ? [] : [`${SUBNET}.1`] },
        listen: { host: host.address, port: 4242 },
        punchy: { punch: false },
        relay: { am_relay: false, use_relays: false },
        tun: { disabled: false, dev: ifName, mtu: 1300 },
        logging: { level: 'info', format: 'text' },
        firewall: { outbound: any, inbound: any },
      };
      await writeFile(f(`${n}.yml`), JSON.stringify(config, null, 2));
      const node = testbed.spawnIn(host.netnsPath, 'nebula', ['-config', f(`${n}.yml`)]);
      processes.push(node);
      await waitForInterface(host, ifName, node, 'nebula');
    }
    const [, h2] = testbed.hosts;
    return { serverNsPath: h2.netnsPath, clientNsPath: h1.netnsPath, serverAddress: `${SUBNET}.2`, processes };
  },
};

/** In the order they run and are listed. */
export const contenders: readonly Contender[] = [wire, kernelVxlan, vtepFloor, netctl, netctlSlow, netctlEncrypted, wireguardGo, tinc(false), tinc(true), openvpn, nebula];
