// Preloaded with `node --import ./record.mjs`: records what a script loads, so
// the test can tell which entries pull in native code or heavy dependencies.
// ESM URLs come from a resolve hook (it runs on the loader thread, hence a
// file), CommonJS modules from require.cache, native addons from process.dlopen.
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';

const out = process.env.NETCTL_RECORD;
if (!out) throw new Error('NETCTL_RECORD (a file prefix) is not set');
writeFileSync(`${out}.esm`, '');
writeFileSync(`${out}.json`, '');
const hook = `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  appendFileSync(${JSON.stringify(`${out}.esm`)}, resolved.url + '\\n');
  return resolved;
}`;
register(`data:text/javascript,${encodeURIComponent(hook)}`);

const dlopened = [];
const dlopen = process.dlopen;
process.dlopen = (module, filename, ...rest) => {
  dlopened.push(filename);
  return dlopen.call(process, module, filename, ...rest);
};

/** Appends what was loaded so far, under `label`; scripts call it where they want a snapshot. */
globalThis.recordLoaded = (label) => {
  const esm = readFileSync(`${out}.esm`, 'utf8').split('\n').filter(Boolean);
  const cjs = Object.keys(createRequire(import.meta.url).cache);
  appendFileSync(`${out}.json`, `${JSON.stringify({ label, modules: [...esm, ...cjs], dlopened: [...dlopened] })}\n`);
};
