// Child process for the resolv.conf crash test: `resolv-churn.ts ETC JOURNAL`
// writes, rewrites and removes sandbox files under ETC without end, as a
// daemon does, until it is killed. Prints "started" once under way.
import { join } from 'node:path';
import { removeResolvConf, writeResolvConf } from '../../../src/sys/resolvconf.js';

const [etc, journalDir] = process.argv.slice(2);
if (etc === undefined || journalDir === undefined) throw new Error('usage: resolv-churn.ts ETC JOURNAL');
for (let i = 0; ; i++) {
  const sandboxId = (i % 8).toString(16).padStart(4, '0');
  const target = { path: join(etc, `ns${sandboxId}`, 'resolv.conf'), sandboxId, owner: '/me', journalDir };
  await writeResolvConf(target, `nameserver 127.0.0.11\noptions ndots:0 # ${i}\n`);
  await writeResolvConf(target, `nameserver 127.0.0.11\n`);
  if (i === 0) process.stdout.write('started\n');
  if (i % 3 === 0) await removeResolvConf(target);
}
