import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import test from 'ava';
import { openFileLimit, raiseOpenFileLimit } from '../../src/sys/rlimit.js';

const run = promisify(execFile);

test('raiseOpenFileLimit lifts the soft open-file limit to the hard one', async (t) => {
  const before = openFileLimit();
  t.true(before.soft > 0 && before.soft <= before.hard);
  // Node raises its own limit at start, so lower it first, as a service manager would start the daemon.
  const lowered = Math.min(256, before.hard);
  await run('prlimit', ['--pid', String(process.pid), `--nofile=${lowered}:`]);
  t.teardown(() => raiseOpenFileLimit());
  t.deepEqual(openFileLimit(), { soft: lowered, hard: before.hard });
  t.deepEqual(raiseOpenFileLimit(), { soft: before.hard, hard: before.hard });
  t.deepEqual(openFileLimit(), { soft: before.hard, hard: before.hard });
});
