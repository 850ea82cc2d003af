/**
 * A real Docker daemon (Debian's docker.io: dockerd 20.10, containerd,
 * runc) for tests, kept inside what the test made:
 *
 * - its network namespace is the test host's (`nsenter --net`), so the
 *   containers' veths and netns never touch the root namespace;
 * - it runs in a private mount namespace whose /run and /etc/docker are
 *   fresh tmpfs, so containerd's shim sockets, runc's state, Docker's
 *   key.json and the plugin directory (`pluginDir` bind-mounted on
 *   /run/docker/plugins, where dockerd looks for plugin sockets) change
 *   nothing outside the test;
 * - every root (data, exec, containerd's root and state, the CLI's config)
 *   is under one temp dir, and its containers' cgroups under a parent
 *   named for this daemon, all removed by stop().
 *
 * stop() ends every process in that mount namespace (dockerd, containerd
 * and the shims that outlive containerd), found by PID through /proc.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readlink, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunResult, run } from './kernel.js';
import { waitFor } from './wait.js';

export interface DockerdOptions {
  /** The test host's namespace name (as under /var/run/netns). */
  readonly netns: string;
  /** A directory of the test's own; it appears to dockerd as /run/docker/plugins. */
  readonly pluginDir: string;
  /** A short tag naming the temp dir and cgroup parent. */
  readonly name: string;
}

export interface RunningDockerd {
  /** DOCKER_HOST for clients: unix://…/docker.sock. */
  readonly dockerHost: string;
  /** The docker CLI against this daemon. */
  docker(args: readonly string[]): Promise<RunResult>;
  /** Imports a busybox rootfs (the static binary and its applets) as image `busybox`. */
  importBusybox(): Promise<void>;
  /** Stops dockerd and containerd (their containers stop, as without live-restore) and starts them again on the same roots. */
  restart(): Promise<void>;
  /** Ends dockerd, containerd and the shims, removes cgroups and every file it made. */
  stop(): Promise<void>;
}

const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((path) => existsSync(path)) ?? '/bin/busybox';

function containerdConfig(root: string): string {
  // CRI is Kubernetes' and wants its own network set-up; dockerd does not use it.
  return [
    'version = 2',
    `root = "${root}/containerd/root"`,
    `state = "${root}/containerd/state"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${root}/containerd/containerd.sock"`,
    '[ttrpc]',
    `  address = "${root}/containerd/containerd.sock.ttrpc"`,
    '[debug]',
    '  address = ""',
    '[metrics]',
    '  address = ""',
    '',
  ].join('\n');
}

/** The inode of a process's mount namespace, or undefined once it is gone. */
async function mountNamespaceOf(pid: number): Promise<string | undefined> {
  try {
    return await readlink(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

async function pidsInMountNamespace(ns: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if ((await mountNamespaceOf(Number(entry))) === ns) pids.push(Number(entry));
  }
  return pids;
}

/** Removes a cgroup directory tree, deepest first (cgroupfs allows only rmdir of empty groups). */
async function removeCgroup(path: string): Promise<void> {
  if (!existsSync(path)) return;
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    if (entry.isDirectory()) await removeCgroup(join(path, entry.name));
  }
  await rmdir(path).catch(() => undefined);
}

const exited = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));

export async function startDockerd(options: DockerdOptions): Promise<RunningDockerd> {
  const root = await mkdtemp(join(tmpdir(), `netctl-dockerd-${options.name}-`));
  const cgroupParent = `netctl-test-${options.name}-${process.pid}`;
  const socket = join(root, 'docker.sock');
  const dockerHost = `unix://${socket}`;
  const cliConfig = join(root, 'cli');
  await mkdir(cliConfig);
  await mkdir(join(root, 'containerd'));
  await writeFile(join(root, 'containerd.toml'), containerdConfig(root));
  await writeFile(join(root, 'daemon.json'), '{}\n');

  // Mounts first (nsenter has already opened the netns, so /run may be covered), then containerd, then dockerd in place of the shell.
  // A short shutdown timeout: busybox's sleep as PID 1 ignores SIGTERM, and dockerd would wait 10 s for each container.
  const script = [
    'set -e',
    'mount -t tmpfs netctl-test-run /run',
    'mkdir -p /run/docker/plugins',
    `mount --bind "$PLUGIN_DIR" /run/docker/plugins`,
    'mount -t tmpfs netctl-test-etc-docker /etc/docker',
    `containerd --config "$ROOT/containerd.toml" >"$ROOT/containerd.log" 2>&1 &`,
    'exec dockerd --bridge=none --iptables=false --ip6tables=false --storage-driver vfs' +
      ' --data-root "$ROOT/data" --exec-root "$ROOT/exec" --pidfile "$ROOT/docker.pid"' +
      ' --host "unix://$ROOT/docker.sock" --containerd "$ROOT/containerd/containerd.sock"' +
      ' --config-file "$ROOT/daemon.json" --shutdown-timeout 2 --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent "/$CGROUP_PARENT"' +
      ' >"$ROOT/dockerd.log" 2>&1',
  ].join('\n');
  const logTail = async (file: string): Promise<string> => (await readFile(join(root, file), 'utf8').catch(() => '')).slice(-3000);
  const env = { ...process.env, DOCKER_HOST: dockerHost, DOCKER_CONFIG: cliConfig };
  const docker = (args: readonly string[]): Promise<RunResult> => run('docker', args, { env, timeoutMs: 120_000 });

  interface Launched {
    readonly child: ChildProcess;
    /** Known before any container starts, so halt() finds the shims even if dockerd has died. */
    readonly mountNs: string | undefined;
  }
  const launch = async (): Promise<Launched> => {
    const child = spawn(
      'nsenter',
      [`--net=/var/run/netns/${options.netns}`, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', script],
      { stdio: 'ignore', env: { ...process.env, ROOT: root, PLUGIN_DIR: options.pluginDir, CGROUP_PARENT: cgroupParent } },
    );
    const pid = child.pid;
    if (pid === undefined) throw new Error('could not start dockerd');
    const mountNs = await waitFor('dockerd\'s private mount namespace', async () => {
      const ns = await mountNamespaceOf(pid);
      const ours = await mountNamespaceOf(process.pid);
      return ns !== undefined && ns !== ours ? ns : undefined;
    }, 10_000).catch(() => undefined);
    return { child, mountNs };
  };

  /** Ends dockerd (which stops its containers), then whatever is left in its mount namespace: containerd, shims. */
  const halt = async ({ child, mountNs }: Launched): Promise<void> => {
    child.kill('SIGTERM');
    await Promise.race([exited(child), new Promise((resolve) => setTimeout(resolve, 20_000))]);
    if (mountNs !== undefined) {
      for (const other of await pidsInMountNamespace(mountNs)) {
        try {
          process.kill(other, 'SIGKILL');
        } catch {
          // Gone already.
        }
      }
      await waitFor('every process of the test dockerd to end', async () => ((await pidsInMountNamespace(mountNs)).length === 0 ? true : undefined), 20_000);
    }
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited(child);
  };

  const ready = async ({ child }: Launched): Promise<void> => {
    await waitFor('dockerd to answer', async () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`dockerd exited (${child.exitCode ?? child.signalCode}): ${await logTail('dockerd.log')}\ncontainerd: ${await logTail('containerd.log')}`);
      }
      return (await docker(['version'])).code === 0 ? true : undefined;
    }, 60_000);
  };

  let current = await launch();

  const stop = async (): Promise<void> => {
    const containers = await docker(['ps', '-aq']);
    const ids = containers.stdout.split('\n').filter((id) => id !== '');
    if (ids.length > 0) await docker(['rm', '-f', ...ids]);
    await halt(current);
    for (const controller of existsSync('/sys/fs/cgroup') ? readdirSync('/sys/fs/cgroup') : []) {
      await removeCgroup(join('/sys/fs/cgroup', controller, cgroupParent));
    }
    await removeCgroup(join('/sys/fs/cgroup', cgroupParent));
    await rm(root, { recursive: true, force: true });
  };

  const restart = async (): Promise<void> => {
    await halt(current);
    current = await launch();
    await ready(current);
  };

  try {
    await ready(current);
  } catch (err) {
    await stop();
    throw err;
  }

  const importBusybox = async (): Promise<void> => {
    const rootfs = join(root, 'busybox');
    await mkdir(join(rootfs, 'bin'), { recursive: true });
    await copyFile(BUSYBOX, join(rootfs, 'bin', 'busybox'));
    const applets = (await run(BUSYBOX, ['--list'])).stdout.split('\n').filter((name) => /^[\w.[-]+$/.test(name) && name !== 'busybox');
    for (const applet of applets) await symlink('busybox', join(rootfs, 'bin', applet));
    const tar = await run('tar', ['-C', rootfs, '-cf', join(root, 'busybox.tar'), '.']);
    if (tar.code !== 0) throw new Error(`tar of the busybox rootfs: ${tar.stderr}`);
    const imported = await docker(['import', join(root, 'busybox.tar'), 'busybox']);
    if (imported.code !== 0) throw new Error(`docker import: ${imported.stderr}`);
    await rm(rootfs, { recursive: true, force: true });
  };

  return { dockerHost, docker, importBusybox, restart, stop };
}
