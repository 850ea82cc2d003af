/**
 * How fast a join or a leave on one host reaches another host's VTEP:
 * three simulated hosts (the multi-host test bed), host3 connects and
 * disconnects a sandbox, host1's `inspect` (Peers come from its VTEP's
 * table) is polled every 5 ms. Prints the median and the spread.
 *
 *   npm run bench:propagation [-- ROUNDS]
 */
import { ApiClient } from '../src/api/client.js';
import { makeCluster, type SimHost } from '../test/helpers/cluster.js';

const rounds = Number(process.argv[2] ?? 15);

async function until(probe: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const start = performance.now();
  while (!(await probe())) {
    if (performance.now() - start > timeoutMs) throw new Error(`not seen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return performance.now() - start;
}

function summary(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return `median ${at(0.5).toFixed(1)} ms, min ${sorted[0]?.toFixed(1)} ms, p90 ${at(0.9).toFixed(1)} ms, max ${sorted.at(-1)?.toFixed(1)} ms (n=${sorted.length})`;
}

const cluster = await makeCluster(3);
const stop = () => void cluster.destroy().finally(() => process.exit(130));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
try {
  const [h1, h2, h3] = cluster.hosts as [SimHost, SimHost, SimHost];
  for (const host of cluster.hosts) await cluster.startDaemon(host);
  await cluster.ok(h1, 'network', 'create', '-d', 'overlay', '--subnet', '10.90.0.0/24', 'bench');
  const anchor = cluster.sandboxName('a');
  await cluster.ok(h2, 'sandbox', 'create', anchor);
  await cluster.ok(h2, 'network', 'connect', 'bench', anchor);
  const observer = new ApiClient(`unix://${h1.socket}`);
  const actor = new ApiClient(`unix://${h3.socket}`);
  const sandbox = cluster.sandboxName('m');
  await cluster.ok(h3, 'sandbox', 'create', sandbox);
  const hasHost3 = async () => ((await observer.inspectNetwork('bench')).Peers ?? []).some((peer) => peer.IP === h3.address);
  const joins: number[] = [];
  const leaves: number[] = [];
  for (let round = 0; round < rounds; round++) {
    await actor.connect('bench', sandbox);
    joins.push(await until(hasHost3, 5000));
    await actor.disconnect('bench', sandbox);
    leaves.push(await until(async () => !(await hasHost3()), 5000));
  }
  console.log(`join seen by another host:  ${summary(joins)}`);
  console.log(`leave seen by another host: ${summary(leaves)}`);
} finally {
  await cluster.destroy();
}
