/**
 * The CNI protocol's data, without a daemon: request configurations in and
 * results, errors and VERSION answers out, in each version, as the spec
 * writes them.
 */
import test from 'ava';
import { sandboxNameFor } from '../../src/cni/attachments.js';
import {
  CniError,
  type CniResult,
  appendResult,
  compareVersions,
  decodeResult,
  encodeError,
  encodeResult,
  encodeVersionResult,
  parseCniArgs,
  parseNetConf,
} from '../../src/cni/spec.js';

const RESULT: CniResult = {
  interfaces: [
    { name: 'veth1234567', mac: '5a:00:00:00:00:01', mtu: 1500 },
    { name: 'eth0', mac: '02:42:0a:62:00:02', mtu: 1500, sandbox: '/var/run/netns/blue' },
  ],
  ips: [
    { address: '10.98.0.2/24', gateway: '10.98.0.1', interface: 1 },
    { address: 'fd00:98::2/64', gateway: 'fd00:98::1', interface: 1 },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.98.0.1' }],
  dns: { nameservers: ['127.0.0.11'] },
};

function cniError(fn: () => unknown): CniError {
  try {
    fn();
  } catch (err) {
    if (err instanceof CniError) return err;
    throw err;
  }
  throw new Error('no error');
}

test('a full request configuration is read; unknown fields are ignored', (t) => {
  const conf = parseNetConf(
    JSON.stringify({
      cniVersion: '1.1.0',
      name: 'dbnet',
      type: 'netctl-cni',
      network: 'backend',
      host: 'unix:///run/netctl/netctl.sock',
      somethingElse: { kept: 'elsewhere' },
      dns: { search: ['corp.example'], options: ['ndots:2'] },
      runtimeConfig: { ips: ['10.98.0.9/24'], aliases: { dbnet: ['db', 'primary'] }, portMappings: [] },
      prevResult: { ...RESULT, extra: 1 },
    }),
  );
  t.deepEqual(conf, {
    cniVersion: '1.1.0',
    name: 'dbnet',
    network: 'backend',
    host: 'unix:///run/netctl/netctl.sock',
    ips: ['10.98.0.9/24'],
    aliases: ['db', 'primary'],
    dns: { search: ['corp.example'], options: ['ndots:2'] },
    prevResult: RESULT,
  });
});

test('aliases may be a plain list (CONVENTIONS.md); args.cni.ips is read when runtimeConfig has none', (t) => {
  const conf = parseNetConf(
    JSON.stringify({ cniVersion: '1.0.0', name: 'n', network: 'x', runtimeConfig: { aliases: ['web'] }, args: { cni: { ips: ['10.1.0.5'] } } }),
  );
  t.deepEqual(conf.aliases, ['web']);
  t.deepEqual(conf.ips, ['10.1.0.5']);
});

test('bad configurations: code 6 for what is not JSON, 1 for a version not spoken, 7 naming the field', (t) => {
  const base = { cniVersion: '1.1.0', name: 'n', type: 'netctl-cni', network: 'x' };
  const cases: [string, number, RegExp][] = [
    ['{not json', 6, /JSON|position|token/i],
    ['[1,2]', 6, /not a JSON object/],
    [JSON.stringify({ ...base, cniVersion: undefined }), 7, /^cniVersion: is missing/],
    [JSON.stringify({ ...base, cniVersion: '0.3.1' }), 1, /cniVersion is 0\.3\.1; netctl-cni supports 0\.4\.0, 1\.0\.0, 1\.1\.0/],
    [JSON.stringify({ ...base, name: '-bad' }), 7, /^name: "-bad" must start/],
    [JSON.stringify({ ...base, network: undefined }), 7, /^network: is missing/],
    [JSON.stringify({ ...base, network: 3 }), 7, /^network: must be a string/],
    [JSON.stringify({ ...base, host: 'tcp://1.2.3.4:2375' }), 7, /^host: "tcp:\/\/1\.2\.3\.4:2375" is not unix:/],
    [JSON.stringify({ ...base, runtimeConfig: { ips: ['10.0.0.300'] } }), 7, /^ips: "10\.0\.0\.300" is not an IP address/],
    [JSON.stringify({ ...base, runtimeConfig: { aliases: 'db' } }), 7, /^runtimeConfig\.aliases/],
    [JSON.stringify({ ...base, prevResult: { interfaces: [{ mac: 'x' }] } }), 7, /^prevResult\.interfaces\[0\]\.name: is missing/],
    [JSON.stringify({ ...base, prevResult: { interfaces: [], ips: [{ address: '10.0.0.2/24', interface: 0 }] } }), 7, /^prevResult\.ips\[0\]\.interface: must index the 0 interfaces/],
    [JSON.stringify({ ...base, prevResult: { ips: [{ address: '10.0.0.2' }] } }), 7, /^prevResult\.ips\[0\]\.address: must be an address in CIDR form/],
    [JSON.stringify({ ...base, 'cni.dev/valid-attachments': [{ containerID: 'a' }] }), 7, /valid-attachments\[0\]: needs containerID and ifname/],
  ];
  for (const [stdin, code, details] of cases) {
    const err = cniError(() => parseNetConf(stdin));
    t.is(err.code, code, stdin);
    t.regex(err.details, details, stdin);
  }
});

test('results as 1.1.0, 1.0.0 and 0.4.0 print them', (t) => {
  t.deepEqual(encodeResult(RESULT, '1.1.0'), { cniVersion: '1.1.0', ...RESULT });
  const v100 = encodeResult(RESULT, '1.0.0');
  t.deepEqual(v100['interfaces'], [
    { name: 'veth1234567', mac: '5a:00:00:00:00:01' },
    { name: 'eth0', mac: '02:42:0a:62:00:02', sandbox: '/var/run/netns/blue' },
  ]);
  t.deepEqual(v100['ips'], RESULT.ips);
  const v040 = encodeResult(RESULT, '0.4.0');
  t.is(v040['cniVersion'], '0.4.0');
  t.deepEqual(v040['ips'], [
    { version: '4', address: '10.98.0.2/24', gateway: '10.98.0.1', interface: 1 },
    { version: '6', address: 'fd00:98::2/64', gateway: 'fd00:98::1', interface: 1 },
  ]);
  // A 0.4.0 prevResult read back and printed as 1.0.0 loses its `version` fields.
  t.deepEqual(encodeResult(decodeResult(v040), '1.0.0')['ips'], RESULT.ips);
});

test('a result after an earlier plugin keeps its entries and whatever fields it had, and moves interface indices', (t) => {
  const previous = decodeResult({
    interfaces: [{ name: 'lo', sandbox: '/var/run/netns/blue', custom: true }],
    ips: [{ address: '127.0.0.1/8', interface: 0 }],
    routes: [{ dst: '192.0.2.0/24', priority: 5 }],
    dns: { nameservers: ['192.0.2.53'], search: ['example'] },
  });
  const merged = appendResult(previous, RESULT);
  t.deepEqual(merged.interfaces.map((i) => i.name), ['lo', 'veth1234567', 'eth0']);
  t.deepEqual(merged.interfaces[0], { name: 'lo', sandbox: '/var/run/netns/blue', custom: true });
  t.deepEqual(merged.ips.map((ip) => ip.interface), [0, 2, 2]);
  t.deepEqual(merged.routes, [{ dst: '192.0.2.0/24', priority: 5 }, ...RESULT.routes]);
  t.deepEqual(merged.dns, { nameservers: ['192.0.2.53', '127.0.0.11'], search: ['example'] });
  t.deepEqual(appendResult({ interfaces: [], ips: [], routes: [] }, RESULT), RESULT);
});

test('errors and VERSION answers', (t) => {
  t.deepEqual(encodeError(new CniError(11, 'try again', 'socket refused'), '1.0.0'), { cniVersion: '1.0.0', code: 11, msg: 'try again', details: 'socket refused' });
  t.deepEqual(encodeError(new CniError(50, 'not available'), '1.1.0'), { cniVersion: '1.1.0', code: 50, msg: 'not available' });
  t.deepEqual(encodeVersionResult('0.4.0'), { cniVersion: '0.4.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });
});

test('CNI_ARGS pairs; a pair without = is code 4', (t) => {
  t.deepEqual([...parseCniArgs('IgnoreUnknown=1;IP=10.1.0.7;K8S_POD_NAME=web-0')], [
    ['IgnoreUnknown', '1'],
    ['IP', '10.1.0.7'],
    ['K8S_POD_NAME', 'web-0'],
  ]);
  t.is(parseCniArgs(undefined).size, 0);
  t.is(parseCniArgs('A=;').get('A'), '');
  const err = cniError(() => parseCniArgs('A=1;oops'));
  t.is(err.code, 4);
  t.regex(err.details, /"oops" is not KEY=VALUE/);
});

test('versions compare by number; sandbox names stay within netctl limits and apart', (t) => {
  t.true(compareVersions('1.0.0', '0.4.0') > 0);
  t.true(compareVersions('0.10.0', '0.4.0') > 0);
  t.is(compareVersions('1.1', '1.1.0'), 0);
  t.is(sandboxNameFor('abc123'), 'cni-abc123');
  const long = 'a'.repeat(300);
  const name = sandboxNameFor(long);
  t.true(name.length <= 200);
  t.is(sandboxNameFor(long), name);
  t.not(sandboxNameFor(`${long}b`), name);
  t.regex(name, /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/);
});
