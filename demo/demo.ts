/**
 * The demo: netctl on its embedded defaults (file store, Docker's default
 * address pools), driven with the CLI as an operator would. It runs the
 * daemon inside a namespace it makes for the purpose, so nothing is added
 * to this machine's own network, and it removes everything it made.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const cli = join(root, 'bin', 'netctl.js');
const tag = String(process.pid % 100000);
const hostNs = `netctl-demo-${tag}`;
const sandboxes = [`demo-a-${tag}`, `demo-b-${tag}`];

function say(text: string): void {
  process.stdout.write(`\n\x1b[1m# ${text}\x1b[0m\n`);
}

/** Runs a command, echoing it and its output; returns stdout. */
function sh(command: string, args: string[], options: { quiet?: boolean; check?: boolean; shown?: string[] } = {}): string {
  const shown = options.shown ?? [command, ...args];
  if (!options.quiet) process.stdout.write(`$ ${shown.map((a) => (/[\s{}"]/.test(a) ? `'${a}'` : a)).join(' ')}\n`);
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (!options.quiet) process.stdout.write(result.stdout + result.stderr);
  if ((options.check ?? true) && result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${result.status}: ${result.stderr.trim()}`);
  }
  return result.stdout;
}

function requireTools(): void {
  if (process.getuid?.() !== 0) throw new Error('the demo makes network namespaces: run it as root');
  for (const tool of ['ip', 'nsenter', 'ping']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is missing: install iproute2, util-linux, iputils-ping`);
  }
  if (!['/usr/sbin/nft', '/sbin/nft'].some(existsSync)) throw new Error('nft is missing: install nftables');
}

async function waitForDaemon(daemon: ChildProcess): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`the daemon did not start: ${output}`)), 20_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('listening')) {
        clearTimeout(timer);
        resolve();
      }
    };
    daemon.stdout?.on('data', onData);
    daemon.stderr?.on('data', onData);
    daemon.on('exit', (code) => reject(new Error(`the daemon exited with ${code}: ${output}`)));
  });
}

async function main(): Promise<void> {
  requireTools();
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-demo-'));
  const socket = join(stateDir, 'netctl.sock');
  process.env['NETCTL_HOST'] = `unix://${socket}`;
  const netctl = (...args: string[]) => sh(process.execPath, [cli, ...args], { shown: ['netctl', ...args] });
  let daemon: ChildProcess | undefined;
  const cleanup = async () => {
    say('Tearing down');
    for (const name of sandboxes) sh(process.execPath, [cli, 'sandbox', 'rm', name], { quiet: true, check: false });
    sh(process.execPath, [cli, 'network', 'rm', 'demo-net'], { quiet: true, check: false });
    if (daemon !== undefined && daemon.exitCode === null) {
      const exited = new Promise((resolve) => daemon?.once('exit', resolve));
      daemon.kill('SIGTERM');
      await exited;
    }
    for (const name of [...sandboxes, hostNs]) {
      if (existsSync(`/var/run/netns/${name}`)) sh('ip', ['netns', 'del', name], { quiet: true, check: false });
    }
    await rm(stateDir, { recursive: true, force: true });
    process.stdout.write('removed the demo namespaces, the daemon and its state\n');
  };
  const interrupted = () => {
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    say(`A namespace standing in for this host (${hostNs}), and netctl's daemon inside it`);
    sh('ip', ['netns', 'add', hostNs]);
    sh('ip', ['-n', hostNs, 'link', 'set', 'lo', 'up'], { quiet: true });
    daemon = spawn('nsenter', [`--net=/var/run/netns/${hostNs}`, process.execPath, cli, 'daemon', '--state-dir', stateDir, '--socket', socket], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await waitForDaemon(daemon);
    process.stdout.write(`daemon listening on unix://${socket} (NETCTL_HOST points the CLI at it)\n`);

    say('A bridge network with an address pool picked from the defaults');
    netctl('network', 'create', 'demo-net');
    netctl('network', 'ls');

    say('Two sandboxes (network namespaces), connected to it');
    for (const name of sandboxes) {
      netctl('sandbox', 'create', name);
      netctl('network', 'connect', 'demo-net', name);
    }
    const listing = netctl('network', 'inspect', '-f', '{{range .Containers}}{{.Name}} {{.IPv4Address}}{{println}}{{end}}', 'demo-net');
    const peerAddress = listing
      .split('\n')
      .find((line) => line.startsWith(`${sandboxes[1]} `))
      ?.split(' ')[1]
      ?.split('/')[0];
    if (peerAddress === undefined) throw new Error(`no address for ${sandboxes[1]} in: ${listing}`);

    say(`${sandboxes[0]} pings ${sandboxes[1]}`);
    sh('ip', ['-n', sandboxes[0] ?? '', 'addr', 'show', 'eth0']);
    sh('nsenter', [`--net=/var/run/netns/${sandboxes[0]}`, 'ping', '-c', '3', '-i', '0.2', peerAddress]);

    say('What docker network inspect would show');
    netctl('network', 'inspect', 'demo-net');
  } finally {
    await cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`);
  process.exitCode = 1;
});
