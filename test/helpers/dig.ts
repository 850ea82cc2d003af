/** `dig` against the embedded DNS inside a named sandbox, as the e2e tests ask it. */
import { inNetns } from './kernel.js';

/** `dig +short` at 127.0.0.11 inside the sandbox: the answers, sorted. */
export async function dig(sandbox: string, ...args: string[]): Promise<string[]> {
  const result = await inNetns(`/var/run/netns/${sandbox}`, 'dig', ['@127.0.0.11', '+tries=1', '+time=3', '+short', ...args]);
  return result.stdout
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith(';'))
    .sort();
}

/** Polls `dig` until it gives `want` (another host's change arrives through etcd's watch) or `timeoutMs` pass; returns the last answers. */
export async function digUntil(sandbox: string, want: readonly string[], timeoutMs: number, ...args: string[]): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  const wanted = JSON.stringify([...want].sort());
  let answers = await dig(sandbox, ...args);
  while (JSON.stringify(answers) !== wanted && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    answers = await dig(sandbox, ...args);
  }
  return answers;
}
