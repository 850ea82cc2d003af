/**
 * EtcdStore against secured etcd members: one serving TLS and requiring
 * client certificates, one with authentication enabled, and a daemon given
 * both through its --store-* flags. Certificates are made with openssl in a
 * temporary directory per run.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { InvalidArgument, Unavailable } from '../../src/errors.js';
import { EtcdStore } from '../../src/store/etcd.js';
import type { EtcdStoreOptions } from '../../src/store/etcd.js';
import { NETCTL_CLI, startDaemon } from '../helpers/daemon.js';
import { startEtcd } from '../helpers/etcd.js';
import type { RunningEtcd } from '../helpers/etcd.js';
import { addNetns, removeNetns, run, uniqueName } from '../helpers/kernel.js';

interface Pki {
  readonly dir: string;
  /** CA that signed the server and client certificates. */
  readonly ca: string;
  /** A CA that signed nothing here. */
  readonly otherCa: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
}

async function openssl(args: string[]): Promise<void> {
  const result = await run('openssl', args);
  if (result.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${result.stderr}`);
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(['req', '-x509', '-new', ...EC_KEY, '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.crt`), '-subj', `/CN=${name}`, '-days', '1']);
}

/** A certificate for 127.0.0.1 signed by the CA `ca`, good for both ends of TLS. */
async function makeLeaf(dir: string, name: string, ca: string): Promise<void> {
  const ext = join(dir, `${name}.ext`);
  await writeFile(ext, 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  await openssl(['req', '-new', ...EC_KEY, '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.csr`), '-subj', `/CN=${name}`]);
  await openssl([
    'x509', '-req', '-in', join(dir, `${name}.csr`), '-CA', join(dir, `${ca}.crt`), '-CAkey', join(dir, `${ca}.key`),
    '-CAcreateserial', '-out', join(dir, `${name}.crt`), '-days', '1', '-extfile', ext,
  ]);
}

async function makePki(): Promise<Pki> {
  const dir = await mkdtemp(join(tmpdir(), 'netctl-pki-'));
  try {
    await makeCa(dir, 'ca');
    await makeCa(dir, 'other-ca');
    await makeLeaf(dir, 'server', 'ca');
    await makeLeaf(dir, 'client', 'ca');
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const file = (name: string) => join(dir, name);
  return {
    dir,
    ca: file('ca.crt'),
    otherCa: file('other-ca.crt'),
    serverCert: file('server.crt'),
    serverKey: file('server.key'),
    clientCert: file('client.crt'),
    clientKey: file('client.key'),
  };
}

const ROOT_PASSWORD = 'correct horse battery staple';

let pki: Pki | undefined;
let tlsEtcd: RunningEtcd | undefined;
let authEtcd: RunningEtcd | undefined;

test.before(async () => {
  pki = await makePki();
  tlsEtcd = await startEtcd({
    tls: {
      certFile: pki.serverCert,
      keyFile: pki.serverKey,
      trustedCaFile: pki.ca,
      clientAuth: { certFile: pki.clientCert, keyFile: pki.clientKey },
    },
  });
  authEtcd = await startEtcd({ rootPassword: ROOT_PASSWORD });
});

test.after.always(async () => {
  await tlsEtcd?.stop();
  await authEtcd?.stop();
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
});

function ready(): { pki: Pki; tlsUrl: string; authUrl: string } {
  if (pki === undefined || tlsEtcd === undefined || authEtcd === undefined) throw new Error('set-up failed');
  return { pki, tlsUrl: tlsEtcd.url, authUrl: authEtcd.url };
}

async function openStore(t: ExecutionContext, url: string, options: EtcdStoreOptions): Promise<EtcdStore> {
  const store = await EtcdStore.open(url, { prefix: `/netctl-tls-test/${process.pid}/`, ...options });
  t.teardown(() => store.close());
  return store;
}

test('TLS: with the CA and a client certificate, etcds:// and https:// URLs put and get', async (t) => {
  const { pki, tlsUrl } = ready();
  t.regex(tlsUrl, /^etcds:\/\//);
  const access = { caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey };
  for (const url of [tlsUrl, tlsUrl.replace('etcds://', 'https://')]) {
    const store = await openStore(t, url, access);
    const key = `k-${url.split(':')[0]}`;
    t.true((await store.txn({ put: [{ key, value: url }] })).succeeded);
    t.is((await store.get(key))?.value, url);
  }
});

test('TLS: a CA that did not sign the server certificate fails at once, naming TLS and the CA file', async (t) => {
  const { pki, tlsUrl } = ready();
  const started = Date.now();
  const err = await t.throwsAsync(
    EtcdStore.open(tlsUrl, { caFile: pki.otherCa, certFile: pki.clientCert, keyFile: pki.clientKey, dialTimeoutMs: 10_000 }),
    { instanceOf: Unavailable },
  );
  const elapsed = Date.now() - started;
  t.log(err?.message);
  t.true(err?.message.startsWith(`TLS with etcd at ${tlsUrl} failed: its certificate is not signed by the CA in ${pki.otherCa}`), err?.message);
  t.true(elapsed < 5000, `rejected after ${elapsed} ms, not at the 10 s dial timeout`);
});

test('TLS: without a client certificate the member refuses us, and the error says so', async (t) => {
  const { pki, tlsUrl } = ready();
  const err = await t.throwsAsync(EtcdStore.open(tlsUrl, { caFile: pki.ca, dialTimeoutMs: 10_000 }), { instanceOf: Unavailable });
  t.log(err?.message);
  t.true(err?.message.startsWith(`TLS with etcd at ${tlsUrl} failed: the member refused a client without a certificate`), err?.message);
});

test('TLS: a plain URL with TLS files, unreadable or non-PEM files, and a certificate without its key are refused', async (t) => {
  const { pki, tlsUrl } = ready();
  const plain = tlsUrl.replace('etcds://', 'etcd://');
  const notPem = join(pki.dir, 'client.ext');
  const cases: [string, EtcdStoreOptions, RegExp][] = [
    [plain, { caFile: pki.ca }, /etcd CA file given, but etcd:\/\/\S+ is not a TLS URL \(use etcds:\/\/ or https:\/\/\)/],
    [plain.replace('etcd://', 'http://'), { certFile: pki.clientCert, keyFile: pki.clientKey }, /etcd client certificate, client key given, but http:\/\/\S+ is not a TLS URL/],
    [tlsUrl, { caFile: join(pki.dir, 'missing.crt') }, new RegExp(`cannot read etcd CA file ${join(pki.dir, 'missing.crt')}: .*ENOENT`)],
    [tlsUrl, { caFile: pki.ca, certFile: notPem, keyFile: pki.clientKey }, /client certificate file .*client\.ext is not in PEM format/],
    [tlsUrl, { caFile: pki.ca, certFile: pki.clientCert }, /certificate needs its key/],
    [tlsUrl, { user: 'root' }, /needs both a user and a password/],
  ];
  for (const [url, options, message] of cases) {
    const err = await t.throwsAsync(EtcdStore.open(url, options), { instanceOf: InvalidArgument }, JSON.stringify(options));
    t.regex(err?.message ?? '', message);
  }
});

test('auth: the right user and password put and get; a wrong password and no credentials fail with messages that say so', async (t) => {
  const { authUrl } = ready();
  const store = await openStore(t, authUrl, { user: 'root', password: ROOT_PASSWORD });
  t.true((await store.txn({ put: [{ key: 'k', value: 'v', ephemeral: true }] })).succeeded, 'a lease is granted as well');
  t.is((await store.get('k'))?.value, 'v');

  const wrong = await t.throwsAsync(EtcdStore.open(authUrl, { user: 'root', password: 'wrong', dialTimeoutMs: 10_000 }), { instanceOf: InvalidArgument });
  t.log(wrong?.message);
  t.true(wrong?.message.startsWith(`etcd at ${authUrl} refused the user name or password for "root"`), wrong?.message);

  const anonymous = await t.throwsAsync(EtcdStore.open(authUrl, { dialTimeoutMs: 10_000 }), { instanceOf: InvalidArgument });
  t.log(anonymous?.message);
  t.true(anonymous?.message.startsWith(`etcd at ${authUrl} has authentication enabled: give a user and password`), anonymous?.message);
});

test.serial('daemon: --store-cacert, --store-cert, --store-key, --store-user and --store-password-file reach the store', async (t) => {
  const { pki } = ready();
  const name = uniqueName('tls');
  t.teardown(() => removeNetns(name));
  const netnsPath = await addNetns(name);
  // Inside its own namespace, so the daemon's data-path port and etcd's ports are its own.
  const etcd = await startEtcd({
    netnsPath,
    tls: { certFile: pki.serverCert, keyFile: pki.serverKey, trustedCaFile: pki.ca, clientAuth: { certFile: pki.clientCert, keyFile: pki.clientKey } },
    rootPassword: ROOT_PASSWORD,
  });
  t.teardown(() => etcd.stop());
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-tls-daemon-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const passwordFile = join(stateDir, 'etcd-password');
  const wrongPasswordFile = join(stateDir, 'wrong-password');
  await writeFile(passwordFile, `${ROOT_PASSWORD}\n`, { mode: 0o600 });
  await writeFile(wrongPasswordFile, 'wrong\n', { mode: 0o600 });
  const socket = join(stateDir, 'netctl.sock');
  const args = (passwords: string) => [
    '--store', etcd.url, '--store-cacert', pki.ca, '--store-cert', pki.clientCert, '--store-key', pki.clientKey,
    '--store-user', 'root', '--store-password-file', passwords, '--advertise-addr', '127.0.0.1', '--dns', '127.0.0.1',
  ];

  const refused = await startDaemon({ netnsPath, stateDir, socket, args: args(wrongPasswordFile) }).then(
    async (daemon) => {
      await daemon.stop('SIGKILL');
      return undefined;
    },
    (err: unknown) => err as Error,
  );
  t.regex(refused?.message ?? 'the daemon started', /refused the user name or password for "root"/);

  const daemon = await startDaemon({ netnsPath, stateDir, socket, args: args(passwordFile) });
  t.teardown(() => daemon.stop('SIGKILL'));
  const created = await run(process.execPath, [NETCTL_CLI, '-H', `unix://${socket}`, 'network', 'create', '-d', 'overlay', '--subnet', '10.75.0.0/24', 'ov']);
  t.is(created.code, 0, created.stderr + daemon.output());
  await daemon.stop('SIGTERM');
});
