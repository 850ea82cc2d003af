#!/usr/bin/env node
// npm runs this when netctl is installed (package.json "install"). The addon
// comes from one of two places, tried in order:
//   1. the prebuilt binary the package ships (prebuilds/<platform>-<arch>/),
//      if it loads on this host: no compiler needed;
//   2. node-gyp, compiling native/ into build/Release/.
// If neither works, say exactly what the host is missing and fail the install,
// rather than leave a netctl that breaks at its first network call.
// A checkout has no prebuilds/ (npm pack makes it), so `npm ci` there compiles.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const platform = `${process.platform}-${process.arch}`;
const prebuilt = fileURLToPath(new URL(`../prebuilds/${platform}/netctl_native.node`, import.meta.url));

function prebuiltLoads() {
  if (!existsSync(prebuilt)) return false;
  try {
    const module = { exports: {} };
    process.dlopen(module, prebuilt);
    // A library that loads but is not ours (or is truncated) would fail later; check a function it registers.
    return typeof module.exports.netnsEnter === 'function';
  } catch (err) {
    // Another libc (musl) or an older glibc than the build host's: compile instead.
    console.warn(`netctl: the prebuilt addon for ${platform} does not load here (${err.message.split('\n')[0]}); compiling it`);
    return false;
  }
}

if (prebuiltLoads()) {
  console.log(`netctl: using the prebuilt addon (prebuilds/${platform})`);
  process.exit(0);
}

// npm hands its own node-gyp to install scripts; outside npm, take the one on the PATH.
const nodeGyp = process.env.npm_config_node_gyp;
const result = nodeGyp
  ? spawnSync(process.execPath, [nodeGyp, 'rebuild'], { cwd: root, stdio: 'inherit' })
  : spawnSync('node-gyp', ['rebuild'], { cwd: root, stdio: 'inherit' });
if (result.status === 0) process.exit(0);
if (result.error) console.error(`netctl: could not run node-gyp (${result.error.message}); npm provides it to install scripts: npm rebuild netctl`);

console.error(`
netctl: its native addon could not be compiled, and no prebuilt one loads on
this host (the package ships one for linux-x64 with glibc). Install a C
compiler, make and Python 3, then install netctl again:
  Debian, Ubuntu:  apt-get install -y build-essential python3
  Fedora, RHEL:    dnf install -y gcc make python3
  Alpine:          apk add build-base python3 linux-headers
node-gyp also needs Node's headers: it downloads them from nodejs.org; offline,
point it at installed ones with npm_config_nodedir=/usr (Debian's nodejs has
them in libnode-dev; NodeSource's nodejs ships them).
`);
process.exit(result.status ?? 1);
