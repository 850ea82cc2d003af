#!/usr/bin/env node
// The CNI plugin: runs the TypeScript sources directly, as bin/netctl.js does
// (tsx compiles them on load). A runtime runs it with the CNI_* environment and
// the configuration on stdin; all the work is in src/cni/main.ts.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cni/main.ts');
const chunks = [];
// Run by hand at a terminal, there is no configuration to wait for.
if (!process.stdin.isTTY) for await (const chunk of process.stdin) chunks.push(chunk);
const outcome = await main(process.env, Buffer.concat(chunks).toString('utf8'));
process.stdout.write(outcome.stdout);
process.stderr.write(outcome.stderr);
process.exitCode = outcome.exitCode;
