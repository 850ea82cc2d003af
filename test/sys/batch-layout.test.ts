import { readFileSync } from 'node:fs';
import test from 'ava';
import { addon } from '../../src/sys/addon.js';
import * as layout from '../../src/sys/batch-layout.js';

/** Every `#define NETCTL_NAME <integer>` of the C header, by NAME. */
function headerConstants(): Record<string, number> {
  const header = readFileSync(new URL('../../native/batch_layout.h', import.meta.url), 'utf8');
  const constants: Record<string, number> = {};
  for (const match of header.matchAll(/^#define NETCTL_([A-Z0-9_]+) (\d+)\s*$/gm)) constants[match[1]!] = Number(match[2]);
  return constants;
}

const typescript: Record<string, number> = { ...layout };

test('src/sys/batch-layout.ts and native/batch_layout.h name the same constants with the same values', (t) => {
  const header = headerConstants();
  t.true(Object.keys(header).length >= 15, 'the header was read');
  t.deepEqual(typescript, header);
});

test('the built addon uses the layouts of src/sys/batch-layout.ts (rebuild after changing the header)', (t) => {
  t.deepEqual({ ...addon().batchLayout }, typescript);
});
