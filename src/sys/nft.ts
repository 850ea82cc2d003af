/**
 * nftables in a given network namespace, through the `nft` tool run under
 * `nsenter --net=PATH` (nftables rulesets are per network namespace).
 */
import { spawn } from 'node:child_process';
import { NetctlError } from '../errors.js';
import { systemTool } from './tools.js';

export type NftFamily = 'inet' | 'ip' | 'ip6' | 'bridge';

interface NftResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runNft(netnsPath: string, args: readonly string[], input?: string): Promise<NftResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(systemTool('nsenter'), [`--net=${netnsPath}`, systemTool('nft'), ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    // nft may exit without reading stdin (listing, or a syntax error); its exit status tells that story.
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}

function nftError(what: string, netnsPath: string, result: NftResult): NetctlError {
  const detail = result.stderr.trim() || `exit status ${String(result.code)}`;
  return new NetctlError('Internal', `nft ${what} in ${netnsPath} failed: ${detail}`);
}

/** Applies an nft script (`nft -f -`) atomically in the namespace at `netnsPath`. */
export async function applyNft(netnsPath: string, script: string): Promise<void> {
  const result = await runNft(netnsPath, ['-f', '-'], script);
  if (result.code !== 0) throw nftError('-f', netnsPath, result);
}

/** Deletes a table and everything in it; a missing table is not an error. */
export async function deleteNftTable(netnsPath: string, family: NftFamily, table: string): Promise<void> {
  const result = await runNft(netnsPath, ['delete', 'table', family, table]);
  if (result.code !== 0 && !/No such file or directory/.test(result.stderr)) {
    throw nftError(`delete table ${family} ${table}`, netnsPath, result);
  }
}

/** The namespace's whole ruleset as `nft list ruleset` prints it. */
export async function listNftRuleset(netnsPath: string): Promise<string> {
  const result = await runNft(netnsPath, ['list', 'ruleset']);
  if (result.code !== 0) throw nftError('list ruleset', netnsPath, result);
  return result.stdout;
}
