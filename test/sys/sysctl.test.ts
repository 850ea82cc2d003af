import { readFileSync } from 'node:fs';
import test from 'ava';
import { InvalidArgument, NotFound } from '../../src/errors.js';
import { getSysctl, setSysctl } from '../../src/sys/sysctl.js';
import { inNetns, tempNetns } from './helpers.js';

test('net sysctls are set and read in the given namespace only', async (t) => {
  const { path } = await tempNetns(t);
  const rootForwarding = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8');
  t.is(await getSysctl(path, 'net.ipv4.ip_forward'), '0');
  await setSysctl(path, 'net.ipv4.ip_forward', '1');
  t.is(await getSysctl(path, 'net.ipv4.ip_forward'), '1');
  t.is((await inNetns(path, 'sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim(), '1');
  t.is(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8'), rootForwarding, 'the root namespace is untouched');

  await setSysctl(path, 'net.ipv6.conf.all.disable_ipv6', '1');
  t.is((await inNetns(path, 'sysctl', ['-n', 'net.ipv6.conf.all.disable_ipv6'])).stdout.trim(), '1');
});

test('bad or unknown keys are rejected', async (t) => {
  const { path } = await tempNetns(t);
  await t.throwsAsync(getSysctl(path, 'kernel.hostname'), { instanceOf: InvalidArgument });
  await t.throwsAsync(getSysctl(path, 'net.ipv4/../../kernel'), { instanceOf: InvalidArgument });
  await t.throwsAsync(getSysctl(path, 'net.ipv4.no_such_key'), { instanceOf: NotFound });
});
