import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';

const run = promisify(execFile);
const native = new URL('../../native/', import.meta.url).pathname;
const check = new URL('helpers/esp-check.c', import.meta.url).pathname;

// The addon takes OpenSSL from the node binary, which a plain program cannot link to: this builds the core against the
// system's (libssl-dev, which scripts/install-system-deps.sh installs; without it the test fails and says so).
test('the C API: a gathered seal equals the in-place one and opens, under ASan and UBSan', async (t) => {
  t.true(existsSync('/usr/include/openssl/evp.h'), 'libssl-dev is installed (scripts/install-system-deps.sh)');
  const dir = await mkdtemp(join(tmpdir(), 'netctl-esp-check-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const binary = join(dir, 'esp-check');
  await run('cc', ['-O1', '-g', '-Wall', '-Wextra', '-Werror', '-fsanitize=address,undefined', '-fno-sanitize-recover=all', `-I${native}`,
    check, join(native, 'esp.c'), '-lcrypto', '-o', binary]);
  const { stdout } = await run(binary);
  t.is(stdout.trim(), 'ok 3000');
});
