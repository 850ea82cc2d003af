#!/usr/bin/env node
// npm pack / npm publish run this first (package.json "prepack"): the package
// ships compiled JavaScript (dist/) and a prebuilt addon for this platform, so
// installing it needs neither tsc nor a C compiler. postpack removes
// prebuilds/ again, so that a checkout's own `npm ci` keeps compiling the addon.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');

function run(command, args) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.status ?? result.signal})`);
}

// The build is incremental (it writes nothing when nothing changed), so dist/
// is not rewritten under tests that run the CLI meanwhile; outputs of sources
// deleted since are removed one by one instead of emptying dist/.
run('npm', ['run', 'build', '--silent']);
const OUTPUT = /(\.d\.ts\.map|\.d\.ts|\.js\.map|\.js)$/;
for (const entry of readdirSync(dist, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !OUTPUT.test(entry.name)) continue;
  const output = join(entry.parentPath ?? entry.path, entry.name);
  const source = join(root, 'src', relative(dist, output).replace(OUTPUT, '.ts'));
  if (!existsSync(source)) rmSync(output);
}

// make is incremental too: this compiles only what changed in native/ since the last build.
run('node-gyp', [existsSync(join(root, 'build', 'Makefile')) ? 'build' : 'rebuild']);
const prebuilds = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
mkdirSync(prebuilds, { recursive: true });
copyFileSync(join(root, 'build', 'Release', 'netctl_native.node'), join(prebuilds, 'netctl_native.node'));
