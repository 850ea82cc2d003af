/**
 * A `netctl daemon` running inside a test host namespace, started with
 * nsenter (not `ip netns exec`, whose private mount namespace would hide the
 * sandbox namespaces the daemon makes).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assertBuilt } from './built.js';

export const NETCTL_CLI = join(dirname(dirname(dirname(fileURLToPath(import.meta.url)))), 'bin', 'netctl.js');

export interface RunningDaemon {
  readonly process: ChildProcess;
  /** Everything it printed so far, stdout and stderr. */
  output(): string;
  /** Sends the signal and waits for the exit; nothing when it already exited. */
  stop(signal: NodeJS.Signals): Promise<void>;
}

export interface DaemonOptions {
  readonly netnsPath: string;
  readonly stateDir: string;
  readonly socket: string;
  /** More daemon flags (`--store`, `--dns`…). */
  readonly args?: readonly string[];
  /**
   * Whether the daemon makes Docker's predefined networks (bridge, host,
   * none). Default false, so a test lists only the networks it made; left
   * to the daemon's own default when `cli` is another build, which may not
   * know the flag.
   */
  readonly predefinedNetworks?: boolean;
  /** The `bin/netctl.js` to run, e.g. another checkout's (default: this checkout's). */
  readonly cli?: string;
  /** Flags for node itself, before the script (`--cpu-prof`…). */
  readonly nodeArgs?: readonly string[];
  readonly timeoutMs?: number;
  /** What start waits for: the API (`listening`) or, by default, the restore done and the DNS answering (`ready`). */
  readonly until?: 'listening' | 'ready';
}

/** Starts the daemon and resolves once it says it is listening; rejects with its output if it exits or stalls. */
export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  if (options.cli === undefined) assertBuilt();
  const predefinedOff = options.predefinedNetworks === false || (options.predefinedNetworks === undefined && options.cli === undefined);
  const child = spawn(
    'nsenter',
    [
      `--net=${options.netnsPath}`,
      process.execPath,
      ...(options.nodeArgs ?? []),
      options.cli ?? NETCTL_CLI,
      'daemon',
      '--state-dir',
      options.stateDir,
      '--socket',
      options.socket,
      ...(predefinedOff ? ['--predefined-networks=false'] : []),
      ...(options.args ?? []),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const daemon: RunningDaemon = {
    process: child,
    output: () => output,
    async stop(signal) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill(signal);
      await exited;
    },
  };
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  // By default a test gets a daemon whose restore is done and whose DNS answers; the API answers before.
  const awaited = options.until === 'listening' ? 'netctl daemon listening' : 'netctl daemon ready';
  while (!output.includes(awaited)) {
    if (child.exitCode !== null) throw new Error(`daemon exited ${child.exitCode}: ${output}`);
    if (Date.now() > deadline) {
      await daemon.stop('SIGKILL');
      throw new Error(`daemon did not start: ${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return daemon;
}
