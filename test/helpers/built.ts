/**
 * bin/netctl.js runs the compiled dist/, not src/: a test that spawns it after
 * src/ changed would test the old code. `npm test` builds first; a test file
 * run on its own (`npx ava test/e2e/…`) gets this check instead of a silent
 * stale result. `npm run build` touches dist/.tsbuildinfo after a clean
 * compile (the incremental build writes nothing when nothing changed), so any
 * source newer than it has not been built.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
let checked = false;

export function assertBuilt(): void {
  if (checked) return;
  let builtAt: number;
  try {
    builtAt = statSync(join(root, 'dist', '.tsbuildinfo')).mtimeMs;
  } catch {
    throw new Error('dist/ is missing: run `npm run build` (the CLI the tests run is the compiled one)');
  }
  const src = join(root, 'src');
  for (const name of readdirSync(src, { recursive: true, encoding: 'utf8' })) {
    if (statSync(join(src, name)).mtimeMs > builtAt) {
      throw new Error(`src/${name} changed after the last build: run \`npm run build\` (the CLI the tests run is the compiled one)`);
    }
  }
  checked = true;
}
