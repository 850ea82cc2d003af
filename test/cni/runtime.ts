/**
 * A CNI runtime as the spec's section 3 describes one, small enough to
 * read: it finds plugins in CNI_PATH, runs them with the CNI_* environment
 * and the request configuration on stdin, picks the conflist's version,
 * derives each plugin's request (name, cniVersion, runtimeConfig from the
 * capabilities, prevResult) and runs a chain in order (ADD, CHECK), in
 * reverse (DEL) or to the end whatever fails (GC). Plugins run inside the
 * test's host namespace (nsenter --net), standing in for the root namespace
 * where a runtime runs them: portmap programs iptables where it runs.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const NETCTL_CNI = join(dirname(dirname(dirname(fileURLToPath(import.meta.url)))), 'bin', 'netctl-cni.js');
export const DEBIAN_CNI_DIR = '/usr/lib/cni';

export interface PluginRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout parsed, when it is JSON. */
  readonly json: any;
}

/** The per-attachment parameters (§3 "Attachment Parameters"). */
export interface AttachmentParams {
  readonly containerId?: string;
  readonly netns?: string;
  readonly ifName?: string;
  readonly args?: string;
}

export interface Runtime {
  /** A directory holding the plugins by their `type` names (CNI_PATH). */
  readonly cniPath: string;
  /** Where plugins run. */
  readonly hostNsPath: string;
  /** Runs one plugin binary with the given CNI_COMMAND and stdin. */
  exec(type: string, command: string, params: AttachmentParams, stdin: string, env?: Record<string, string>): Promise<PluginRun>;
  close(): Promise<void>;
}

/** A CNI bin directory with netctl-cni and Debian's reference plugins, as an operator links them into /opt/cni/bin. */
export async function makeRuntime(hostNsPath: string): Promise<Runtime> {
  const cniPath = await mkdtemp(join(tmpdir(), 'netctl-cni-bin-'));
  await symlink(NETCTL_CNI, join(cniPath, 'netctl-cni'));
  for (const plugin of ['portmap', 'bandwidth', 'loopback']) await symlink(join(DEBIAN_CNI_DIR, plugin), join(cniPath, plugin));
  return {
    cniPath,
    hostNsPath,
    exec: (type, command, params, stdin, env = {}) => execPlugin(join(cniPath, type), hostNsPath, cniPath, command, params, stdin, env),
    close: () => rm(cniPath, { recursive: true, force: true }),
  };
}

function execPlugin(
  executable: string,
  hostNsPath: string,
  cniPath: string,
  command: string,
  params: AttachmentParams,
  stdin: string,
  extraEnv: Record<string, string>,
): Promise<PluginRun> {
  const env: Record<string, string> = {
    // The plugin's `#!/usr/bin/env node` finds the node running the tests first.
    PATH: `${dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin`,
    CNI_COMMAND: command,
    CNI_PATH: cniPath,
    ...(params.containerId !== undefined ? { CNI_CONTAINERID: params.containerId } : {}),
    ...(params.netns !== undefined ? { CNI_NETNS: params.netns } : {}),
    ...(params.ifName !== undefined ? { CNI_IFNAME: params.ifName } : {}),
    ...(params.args !== undefined ? { CNI_ARGS: params.args } : {}),
    ...extraEnv,
  };
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', [`--net=${hostNsPath}`, executable], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      let json: unknown;
      try {
        json = stdout.trim() === '' ? undefined : JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolve({ code: code ?? -1, stdout, stderr, json });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(stdin);
  });
}

// ------------------------------------------------------------------ conflists (§3)

export interface PluginConf {
  readonly type: string;
  readonly capabilities?: Record<string, boolean>;
  readonly [field: string]: unknown;
}

export interface Conflist {
  readonly cniVersion: string;
  readonly cniVersions?: readonly string[];
  readonly name: string;
  readonly plugins: readonly PluginConf[];
}

function compare(a: string, b: string): number {
  const [x, y] = [a.split('.').map(Number), b.split('.').map(Number)];
  for (let i = 0; i < 3; i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
}

/** §1 "Version considerations": the highest of the conflist's versions that every plugin's VERSION supports. */
export async function selectVersion(runtime: Runtime, conflist: Conflist): Promise<string> {
  const offered = [...new Set([conflist.cniVersion, ...(conflist.cniVersions ?? [])])].sort(compare).reverse();
  const supported: string[][] = [];
  for (const plugin of conflist.plugins) {
    const answer = await runtime.exec(plugin.type, 'VERSION', {}, JSON.stringify({ cniVersion: conflist.cniVersion }));
    supported.push((answer.json?.supportedVersions as string[] | undefined) ?? []);
  }
  const version = offered.find((v) => supported.every((list) => list.includes(v)));
  if (version === undefined) throw new Error(`no version of ${offered.join(', ')} is supported by every plugin`);
  return version;
}

/** §3 "Deriving request configuration": the plugin's object without `capabilities`, with name, version, runtimeConfig, prevResult. */
export function requestConfig(
  conflist: Conflist,
  plugin: PluginConf,
  version: string,
  capabilityArgs: Record<string, unknown>,
  prevResult?: unknown,
): Record<string, unknown> {
  const { capabilities, ...rest } = plugin;
  const runtimeConfig = Object.fromEntries(Object.entries(capabilityArgs).filter(([key]) => capabilities?.[key] === true));
  return {
    ...rest,
    cniVersion: version,
    name: conflist.name,
    ...(Object.keys(runtimeConfig).length > 0 ? { runtimeConfig } : {}),
    ...(prevResult !== undefined ? { prevResult } : {}),
  };
}

export interface ChainOutcome {
  /** The last plugin's answer, or the first that failed. */
  readonly last: PluginRun;
  /** Every plugin's answer, in the order they ran. */
  readonly runs: readonly { type: string; run: PluginRun }[];
  readonly version: string;
}

/** Adds the attachment: every plugin in order, each with the previous result; stops at the first error. */
export async function addAttachment(runtime: Runtime, conflist: Conflist, params: AttachmentParams, capabilityArgs: Record<string, unknown> = {}): Promise<ChainOutcome> {
  const version = await selectVersion(runtime, conflist);
  const runs: { type: string; run: PluginRun }[] = [];
  let prevResult: unknown;
  for (const plugin of conflist.plugins) {
    const run = await runtime.exec(plugin.type, 'ADD', params, JSON.stringify(requestConfig(conflist, plugin, version, capabilityArgs, prevResult)));
    runs.push({ type: plugin.type, run });
    if (run.code !== 0) return { last: run, runs, version };
    prevResult = run.json;
  }
  return { last: runs[runs.length - 1]!.run, runs, version };
}

/** CHECK (in order) or DEL (in reverse), each plugin given the final ADD result. */
export async function checkOrDelete(
  runtime: Runtime,
  command: 'CHECK' | 'DEL',
  conflist: Conflist,
  params: AttachmentParams,
  addResult: unknown,
  capabilityArgs: Record<string, unknown> = {},
): Promise<ChainOutcome> {
  const version = await selectVersion(runtime, conflist);
  const plugins = command === 'DEL' ? [...conflist.plugins].reverse() : conflist.plugins;
  const runs: { type: string; run: PluginRun }[] = [];
  for (const plugin of plugins) {
    const run = await runtime.exec(plugin.type, command, params, JSON.stringify(requestConfig(conflist, plugin, version, capabilityArgs, addResult)));
    runs.push({ type: plugin.type, run });
    if (run.code !== 0) break;
  }
  return { last: runs[runs.length - 1]!.run, runs, version };
}
