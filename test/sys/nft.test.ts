import test from 'ava';
import { NetctlError } from '../../src/errors.js';
import { applyNft, deleteNftTable, listNftRuleset } from '../../src/sys/nft.js';
import { inNetns, tempNetns } from './helpers.js';

test('a table applied in a namespace is listed there and can be deleted', async (t) => {
  const { path } = await tempNetns(t);
  await applyNft(
    path,
    `table inet nct_test {
      chain input {
        type filter hook input priority 0; policy accept;
        udp dport 4789 counter accept
      }
    }
`,
  );
  const ruleset = await listNftRuleset(path);
  t.regex(ruleset, /table inet nct_test/);
  t.regex(ruleset, /udp dport 4789 counter/);
  const { stdout } = await inNetns(path, '/usr/sbin/nft', ['list', 'tables']);
  t.regex(stdout, /table inet nct_test/, 'nft itself sees it in that namespace');

  await deleteNftTable(path, 'inet', 'nct_test');
  t.notRegex(await listNftRuleset(path), /nct_test/);
  await t.notThrowsAsync(deleteNftTable(path, 'inet', 'nct_test'), 'a missing table is fine');
});

test('a rejected script throws with nft’s message and changes nothing', async (t) => {
  const { path } = await tempNetns(t);
  const error = await t.throwsAsync(
    applyNft(path, 'table inet nct_bad {\n chain c { type filter hook input priority 0; nonsense }\n}\n'),
    { instanceOf: NetctlError },
  );
  t.regex(error.message, /nonsense|syntax/i);
  t.notRegex(await listNftRuleset(path), /nct_bad/);
});
