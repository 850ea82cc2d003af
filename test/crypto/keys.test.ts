import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { STATIC_KEY_FILE, deriveSa, generateKeyPair, isUsableSpi, loadOrCreateStaticKey, sharedSecret } from '../../src/crypto/keys.js';

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'netctl-keys-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function host() {
  return { static: generateKeyPair(), ephemeral: generateKeyPair() };
}

function sa(from: ReturnType<typeof host>, to: ReturnType<typeof host>, names: [string, string], vni = 4096, epochs: [number, number] = [1, 1]) {
  return deriveSa({
    sender: names[0],
    receiver: names[1],
    vni,
    senderEpoch: epochs[0],
    receiverEpoch: epochs[1],
    staticShared: sharedSecret(from.static.privateKey, to.static.publicKey),
    ephemeralShared: sharedSecret(from.ephemeral.privateKey, to.ephemeral.publicKey),
  });
}

test('sender and receiver derive the same SA from their own private keys and the other public ones', (t) => {
  const a = host();
  const b = host();
  const atSender = sa(a, b, ['198.18.0.1', '198.18.0.2']);
  const atReceiver = deriveSa({
    sender: '198.18.0.1',
    receiver: '198.18.0.2',
    vni: 4096,
    senderEpoch: 1,
    receiverEpoch: 1,
    staticShared: sharedSecret(b.static.privateKey, a.static.publicKey),
    ephemeralShared: sharedSecret(b.ephemeral.privateKey, a.ephemeral.publicKey),
  });
  t.deepEqual(atReceiver, atSender);
  t.is(atSender.key.length, 32);
  t.is(atSender.salt.length, 4);
  t.true(isUsableSpi(atSender.spi));
});

test('each direction, network, epoch and pair of hosts has keys of its own', (t) => {
  const a = host();
  const b = host();
  const c = host();
  const base = sa(a, b, ['a', 'b']);
  const others = [
    sa(b, a, ['b', 'a']),
    sa(a, b, ['a', 'b'], 4097),
    sa(a, b, ['a', 'b'], 4096, [2, 1]),
    sa(a, b, ['a', 'b'], 4096, [1, 2]),
    sa(a, c, ['a', 'c']),
    sa(c, b, ['c', 'b']),
  ];
  for (const other of others) {
    t.notDeepEqual(other.key, base.key);
    t.not(other.spi, base.spi);
  }
});

test('a host that publishes an ephemeral key without the long-term private key derives other keys', (t) => {
  const a = host();
  const b = host();
  const intruder = host();
  const genuine = sa(a, b, ['a', 'b']);
  // The intruder's ephemeral key under a's name: b mixes in a's long-term public key, which the intruder cannot match.
  const atB = deriveSa({
    sender: 'a',
    receiver: 'b',
    vni: 4096,
    senderEpoch: 1,
    receiverEpoch: 1,
    staticShared: sharedSecret(b.static.privateKey, a.static.publicKey),
    ephemeralShared: sharedSecret(b.ephemeral.privateKey, intruder.ephemeral.publicKey),
  });
  const atIntruder = deriveSa({
    sender: 'a',
    receiver: 'b',
    vni: 4096,
    senderEpoch: 1,
    receiverEpoch: 1,
    staticShared: sharedSecret(intruder.static.privateKey, b.static.publicKey),
    ephemeralShared: sharedSecret(intruder.ephemeral.privateKey, b.ephemeral.publicKey),
  });
  t.notDeepEqual(atIntruder.key, atB.key);
  t.notDeepEqual(genuine.key, atB.key);
});

test('SPIs a receiver must never see are not used', (t) => {
  t.false(isUsableSpi(0));
  t.false(isUsableSpi(255));
  t.false(isUsableSpi(0x08000000));
  t.false(isUsableSpi(0x08200000));
  t.true(isUsableSpi(256));
  t.true(isUsableSpi(0xffffffff));
});

test('the long-term key is made once, 0600, and read back the same', async (t) => {
  const dir = await tempDir(t);
  const first = await loadOrCreateStaticKey(dir);
  t.is((await stat(join(dir, STATIC_KEY_FILE))).mode & 0o777, 0o600);
  const again = await loadOrCreateStaticKey(dir);
  t.deepEqual(again.publicKey, first.publicKey);
  t.is(first.publicKey.length, 32);
});

test('a key file that is not an X25519 PEM key is refused by name', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, STATIC_KEY_FILE), 'not a key');
  await t.throwsAsync(loadOrCreateStaticKey(dir), { message: new RegExp(`${STATIC_KEY_FILE} is not a PEM private key`) });
});

test('public keys of the wrong size or of low order are refused', (t) => {
  const own = generateKeyPair();
  t.throws(() => sharedSecret(own.privateKey, Buffer.alloc(31)), { message: /32 bytes, not 31/ });
  t.throws(() => sharedSecret(own.privateKey, Buffer.alloc(32)), { message: /low-order point|invalid|public key/i });
});
