/** Runs bin/netctl.js as a child process, the way a user would. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { assertBuilt } from '../helpers/built.js';

export const NETCTL_BIN = fileURLToPath(new URL('../../bin/netctl.js', import.meta.url));

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function runNetctl(
  args: readonly string[],
  options: { input?: string; env?: Record<string, string | undefined> } = {},
): Promise<RunResult> {
  assertBuilt();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [NETCTL_BIN, ...args], {
      env: { ...process.env, NETCTL_HOST: undefined, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}
