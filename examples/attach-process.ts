/**
 * A runtime using netctl as a library: it attaches a running process's
 * network namespace to a network, keeps it there while the job runs (here:
 * until stdin closes), and tears it down. Run it in the namespace where the
 * host's bridges belong:
 *
 *   node --import tsx examples/attach-process.ts PID STATE_DIR
 */
import { openHost } from 'netctl';

const [pid, stateDir] = process.argv.slice(2);
if (pid === undefined || stateDir === undefined) throw new Error('usage: attach-process.ts PID STATE_DIR');

const host = await openHost({ stateDir });
await host.ready;
const { controller } = host;
const unsubscribe = controller.subscribe((event) => console.log(`event: ${event.type} ${event.action}`));

await controller.createNetwork({ name: 'jobs', ipam: { config: [{ subnet: '10.88.0.0/24' }] } });
// Any network namespace will do; netctl never deletes one it did not make.
const sandbox = await controller.createSandbox({ name: `job-${pid}`, netnsPath: `/proc/${pid}/ns/net` });
const endpoint = await controller.connect('jobs', sandbox.id);
const { resolvConfPath } = await controller.inspectSandbox(sandbox.id);
console.log(`attached: ${endpoint.ifName} ${endpoint.ipv4Address} resolv.conf ${resolvConfPath}`);

for await (const _ of process.stdin) {
  // The job runs until the runtime closes our stdin.
}

// Leaves every network and forgets the sandbox; the namespace stays the process's.
await controller.removeSandbox(sandbox.id);
await controller.removeNetwork('jobs');
unsubscribe();
await host.close();
console.log('detached');
