/**
 * Policy routing rules, which rtnl.ts does not cover, through the `ip` tool
 * (iproute2) run under `nsenter --net=PATH`.
 */
import { execFile, spawn } from 'node:child_process';
import { NetctlError } from '../errors.js';
import { systemTool } from './tools.js';

/** Runs `ip -batch -` with `lines` in the namespace; the first failing line fails it. */
export async function ipBatch(netnsPath: string, lines: readonly string[]): Promise<void> {
  if (lines.length === 0) return;
  await new Promise<void>((resolve, reject) => {
    const child = spawn(systemTool('nsenter'), [`--net=${netnsPath}`, systemTool('ip'), '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new NetctlError('Internal', `ip -batch in ${netnsPath} failed: ${stderr.trim() || `exit status ${String(code)}`}`));
    });
    child.stdin.on('error', () => {});
    child.stdin.end(`${lines.join('\n')}\n`);
  });
}

/** The priorities of the namespace's IPv4 routing rules. */
export async function rulePriorities(netnsPath: string): Promise<number[]> {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(systemTool('nsenter'), [`--net=${netnsPath}`, systemTool('ip'), '-j', '-4', 'rule', 'show'], (err, out, stderr) => {
      if (err === null) resolve(out);
      else reject(new NetctlError('Internal', `ip rule show in ${netnsPath} failed: ${stderr.trim() || err.message}`));
    });
  });
  const rules = JSON.parse(stdout) as unknown;
  if (!Array.isArray(rules)) throw new NetctlError('Internal', `ip rule show in ${netnsPath}: unexpected output`);
  return rules.flatMap((rule: unknown) => {
    const priority = (rule as { priority?: unknown } | null)?.priority;
    return typeof priority === 'number' ? [priority] : [];
  });
}
