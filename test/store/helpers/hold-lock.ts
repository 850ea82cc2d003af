// Child process: `hold-lock.ts PATH` takes the lock, prints "locked" and waits to be killed.
import { lockFile } from '../../../src/sys/fslock.js';

const [path] = process.argv.slice(2);
if (path === undefined) throw new Error('usage: hold-lock.ts PATH');
await lockFile(path);
process.stdout.write('locked\n');
setInterval(() => undefined, 60_000);
