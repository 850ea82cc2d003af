#!/usr/bin/env node
// Runs the compiled CLI (dist/, written by `npm run build` and shipped in the
// package): no TypeScript compiler at run time, so `netctl` starts fast.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  const root = fileURLToPath(new URL('..', import.meta.url));
  process.stderr.write(`netctl: ${fileURLToPath(entry)} is missing: run \`npm run build\` in ${root} (it compiles src/ to dist/)\n`);
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
