/**
 * Key material of encrypted overlays. Each host has a long-term X25519 key
 * pair (the private key 0600 in the state directory, the public key in the
 * cluster store) and a fresh ephemeral pair per epoch, whose private half
 * lives only in memory. The keys of one direction between two hosts on one
 * network are derived from both Diffie-Hellman results,
 *
 *   HKDF-SHA256(ikm = DH(static_s, static_r) ‖ DH(eph_s, eph_r),
 *               salt = "netctl esp v1",
 *               info = sender ‖ receiver ‖ VNI ‖ sender epoch ‖ receiver epoch)
 *
 * so only the two hosts can compute them (a third host's keys give it
 * nothing), a leaked long-term key does not open traffic whose ephemeral
 * keys are gone (forward secrecy), and the static half authenticates the
 * ephemeral half: whoever writes a host's ephemeral key into the cluster
 * store without its long-term private key derives other keys than the
 * receiver and is dropped as forged.
 */
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgument } from '../errors.js';

export const STATIC_KEY_FILE = 'esp-host.key';
const HKDF_SALT = Buffer.from('netctl esp v1');
/**
 * An SPI below 256 is reserved (RFC 4303 §2.1); 0x08000000 and 0x08200000 are
 * how a VXLAN header starts (without and with remote checksum offload), which
 * is how a receiver tells the two apart.
 */
const VXLAN_FIRST_WORDS = new Set([0x08000000, 0x08200000]);

export interface KeyPair {
  readonly privateKey: KeyObject;
  /** The raw 32-byte X25519 public key, as published. */
  readonly publicKey: Buffer;
}

export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { privateKey, publicKey: rawPublicKey(publicKey) };
}

/** The host's long-term key pair from the state directory, made (0600) on first use. */
export async function loadOrCreateStaticKey(stateDir: string): Promise<KeyPair> {
  const path = join(stateDir, STATIC_KEY_FILE);
  let pem: string | undefined;
  try {
    pem = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (pem === undefined) {
    const pair = generateKeyPair();
    // wx: two daemons racing on one state directory must not each believe their own key.
    await writeFile(path, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
    return pair;
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch (err) {
    throw new InvalidArgument(`${path} is not a PEM private key: ${(err as Error).message}`);
  }
  if (privateKey.asymmetricKeyType !== 'x25519') throw new InvalidArgument(`${path} holds a ${privateKey.asymmetricKeyType} key, not X25519`);
  return { privateKey, publicKey: rawPublicKey(createPublicKey(privateKey)) };
}

function rawPublicKey(key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' });
  return Buffer.from(jwk.x ?? '', 'base64url');
}

/** X25519 with a published raw public key; throws InvalidArgument for one that is not 32 bytes or is degenerate. */
export function sharedSecret(own: KeyObject, peerPublic: Uint8Array): Buffer {
  if (peerPublic.length !== 32) throw new InvalidArgument(`an X25519 public key has 32 bytes, not ${peerPublic.length}`);
  const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(peerPublic).toString('base64url') }, format: 'jwk' });
  let secret: Buffer;
  try {
    secret = diffieHellman({ privateKey: own, publicKey });
  } catch (err) {
    // OpenSSL refuses a result of all zeros, which a low-order point gives.
    throw new InvalidArgument(`the peer public key is unusable (a low-order point): ${(err as Error).message}`);
  }
  // Belt and braces, should a build of OpenSSL not check: that result would be known to anyone.
  if (secret.every((byte) => byte === 0)) throw new InvalidArgument('the peer public key is unusable (a low-order point)');
  return secret;
}

/** What one direction of one network between two hosts is sealed with. */
export interface SaKeys {
  readonly spi: number;
  /** 32 bytes of AES-256 key. */
  readonly key: Buffer;
  /** The 4-byte salt of the RFC 4106 nonce. */
  readonly salt: Buffer;
}

export interface SaParameters {
  /** The hosts' ids (their underlay addresses), sender first. */
  readonly sender: string;
  readonly receiver: string;
  readonly vni: number;
  readonly senderEpoch: number;
  readonly receiverEpoch: number;
  /** DH of the two long-term keys, and of the two epochs' ephemeral keys. */
  readonly staticShared: Uint8Array;
  readonly ephemeralShared: Uint8Array;
}

/**
 * The SA of one direction: both hosts compute the same key, salt and SPI.
 * The SPI comes from the same derivation (so no message is needed to agree
 * on it); values a receiver must never see are skipped by deriving again
 * with a counter, which both sides do alike.
 */
export function deriveSa(parameters: SaParameters): SaKeys {
  const ikm = Buffer.concat([parameters.staticShared, parameters.ephemeralShared]);
  const info = Buffer.from(
    JSON.stringify([parameters.sender, parameters.receiver, parameters.vni, parameters.senderEpoch, parameters.receiverEpoch]),
  );
  const material = Buffer.from(hkdfSync('sha256', ikm, HKDF_SALT, info, 36));
  let spi = 0;
  for (let attempt = 0; !isUsableSpi(spi); attempt++) {
    const spiInfo = Buffer.concat([info, Buffer.from(` spi ${attempt}`)]);
    spi = Buffer.from(hkdfSync('sha256', ikm, HKDF_SALT, spiInfo, 4)).readUInt32BE(0);
  }
  return { spi, key: material.subarray(0, 32), salt: material.subarray(32, 36) };
}

export function isUsableSpi(spi: number): boolean {
  return spi >= 256 && !VXLAN_FIRST_WORDS.has(spi) && spi <= 0xffffffff;
}
