#!/usr/bin/env node
// The CNI plugin, compiled (dist/, written by `npm run build` and shipped in
// the package): a runtime runs it once per verb, so it must start fast. It
// runs with the CNI_* environment and the configuration on stdin; all the
// work is in src/cni/main.ts.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/cni/main.js', import.meta.url);
if (!existsSync(entry)) {
  const root = fileURLToPath(new URL('..', import.meta.url));
  process.stderr.write(`netctl-cni: ${fileURLToPath(entry)} is missing: run \`npm run build\` in ${root} (it compiles src/ to dist/)\n`);
  process.exit(1);
}
const { main } = await import(entry.href);
const chunks = [];
// Run by hand at a terminal, there is no configuration to wait for.
if (!process.stdin.isTTY) for await (const chunk of process.stdin) chunks.push(chunk);
const outcome = await main(process.env, Buffer.concat(chunks).toString('utf8'));
process.stdout.write(outcome.stdout);
process.stderr.write(outcome.stderr);
process.exitCode = outcome.exitCode;
