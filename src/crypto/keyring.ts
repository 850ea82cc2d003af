/**
 * The security associations of a host's encrypted overlays: which SAs its
 * ESP table holds and which one the VTEP seals with per (network, peer).
 * Pure bookkeeping; table, VTEP, store and clock are injected.
 *
 * Each own epoch is a fresh ephemeral X25519 pair. For every served VNI,
 * peer, peer epoch s and own epoch r there is an inbound SA (s, r), installed
 * before r is published so a peer may seal to r once it sees it. Outbound
 * uses our newest epoch published at least `graceMs` ago (peers have seen it;
 * at start, with no older one, the first as soon as it is published) and the
 * peer's newest. A network no longer served keeps its SAs, kept up to date,
 * for GONE_ROTATIONS rotations (the VTEP seals nothing on it meanwhile): a
 * sandbox joining again soon finds them, and no SA needs making twice. Sealing starts at sequence 1 and a repeated GCM
 * nonce gives the key away, so no outbound (VNI, peer, s, r) is used twice in
 * a ring's life; nor is an inbound SA installed twice, as its replay window
 * would start over. When either blocks an SA, a new epoch is made at once.
 */
import { Conflict, InvalidArgument, Unavailable } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import type { EspSaKeys } from '../sys/esp.js';
import { deriveSa, generateKeyPair, type KeyPair, sharedSecret } from './keys.js';

/** The current epoch and two older: a peer cut off from the store for two rotations still reaches us. */
export const EPOCHS_KEPT = 3;
const PUBLISH_RETRY_MS = 5_000;
/** A peer whose record left the store keeps its SAs this many rotations: its data path may be fine. */
const GONE_ROTATIONS = 3;

/** What a host publishes in its host record (JSON): base64 (standard) of raw 32-byte X25519 publics, epochs oldest first. */
export interface PublishedKeys { readonly static: string; readonly epochs: readonly { readonly id: number; readonly public: string }[] }

/** The part of EspTable the ring uses (EspTable satisfies it). */
export interface SaTable {
  addInbound(sa: EspSaKeys): void;
  addOutbound(sa: EspSaKeys): void;
  remove(direction: 'inbound' | 'outbound', spi: number): boolean;
}

/** An SA as it is made, for `--esp-keylog`: key material, in copies the receiver may keep. */
export interface SaKeylogEntry {
  readonly direction: 'inbound' | 'outbound';
  readonly source: string;
  readonly destination: string;
  readonly spi: number;
  readonly key: Buffer;
  readonly salt: Buffer;
  readonly vni: number;
}

/** setTimeout/clearTimeout, injectable so tests run without waiting. */
export interface KeyRingTimers { set(fn: () => void, ms: number): unknown; clear(handle: unknown): void }

export interface KeyRingOptions {
  /** This host's id: its underlay address. */
  readonly self: string;
  readonly staticKey: KeyPair;
  readonly table: SaTable;
  /** The VTEP seals frames of `vni` to `peer` with `spi`; undefined: no SA, frames are dropped (fail closed). */
  readonly setOutbound: (vni: number, peer: string, spi: number | undefined) => void;
  /** Writes this host's keys into its host record; may reject (store down): retried at the next tick. */
  readonly publish: (keys: PublishedKeys) => Promise<void>;
  readonly onSa?: (sa: SaKeylogEntry) => void;
  /** Defaults: 10 minutes, and 3 s for peers to see a new epoch (through the store's watch) before it is sealed with. */
  readonly rotateEveryMs?: number;
  readonly graceMs?: number;
  /** Wall-clock milliseconds: epoch ids come from it, so they do not repeat across restarts. */
  readonly now?: () => number;
  readonly logger?: Logger;
  readonly timers?: KeyRingTimers;
}

/** Bookkeeping of one SA; never key material. */
export interface SaStatus { readonly spi: number; readonly senderEpoch: number; readonly receiverEpoch: number; readonly installedAt: number }

export interface PeerSaStatus {
  readonly peer: string;
  readonly outbound?: SaStatus;
  readonly inbound: readonly SaStatus[];
  /** When its record left the store (peerGone). */
  readonly goneAt?: number;
}

export interface KeyRingStatus {
  /** The network asked about: `peers` are its SAs (none when it is not served). */
  readonly vni?: number;
  readonly peers: readonly PeerSaStatus[];
  /** Own epochs, oldest first; one without publishedAt is not sealed with. */
  readonly epochs: readonly { readonly id: number; readonly createdAt: number; readonly publishedAt?: number }[];
  /** Epochs made after the first. */
  readonly rotations: number;
  /** SAs skipped because the table had their SPI (two derivations met: chance 2^-32 each). */
  readonly spiCollisions: number;
  /** When the next rotation, or retry of a failed publish, is due. */
  readonly nextRotationAt: number;
}

interface Epoch {
  readonly id: number;
  readonly createdAt: number;
  publishedAt: number | undefined;
  /** The private half lives only here, and goes with the epoch. */
  readonly pair: KeyPair;
  /** DH with peers' ephemeral publics (by base64): a repeated record costs HKDFs, not X25519s. */
  readonly ephemeralShared: Map<string, Buffer>;
  /** Outbound identities and inbound SAs this epoch has had; not needed once it is gone, as its id never comes back. */
  readonly sealedWith: Set<string>;
  readonly openedWith: Set<string>;
}

interface PeerEpoch { readonly id: number; readonly public: Buffer; readonly text: string }

interface Peer {
  /** The record as read, to tell a repeated setPeer. */
  readonly record: string;
  readonly staticText: string;
  readonly staticShared: Buffer;
  readonly epochs: readonly PeerEpoch[];
  goneAt?: number;
  goneTimer?: unknown;
}

interface InstalledSa extends SaStatus {
  readonly vni: number;
  /** What the key was derived from: a change of any part needs another SA. */
  readonly material: string;
}

type Settings = KeyRingOptions & Required<Pick<KeyRingOptions, 'rotateEveryMs' | 'graceMs' | 'now' | 'logger' | 'timers'>>;

const defaultTimers: KeyRingTimers = {
  // Rotation alone must not keep a process alive.
  set: (fn, ms) => setTimeout(fn, ms).unref(),
  clear: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export class KeyRing {
  readonly #options: Settings;
  #epochs: Epoch[] = [];
  readonly #vnis = new Set<number>();
  /** Served no more: the VTEP seals nothing on them; their SAs go when the timer fires, unless served again. */
  readonly #parked = new Map<number, unknown>();
  readonly #peers = new Map<string, Peer>();
  /** Per peer: inbound SAs by material, and what the VTEP was told per VNI (undefined: drop). */
  readonly #inbound = new Map<string, Map<string, InstalledSa>>();
  readonly #outbound = new Map<string, Map<number, InstalledSa | undefined>>();
  #rotations = 0;
  #spiCollisions = 0;
  #rotationTimer: unknown;
  #nextRotationAt = 0;
  #graceTimer: unknown;
  /** Rotations and publishes run one at a time. */
  #queue: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(options: KeyRingOptions) {
    this.#options = { rotateEveryMs: 600_000, graceMs: 3_000, now: Date.now, logger: silentLogger, timers: defaultTimers, ...options };
    const { rotateEveryMs, graceMs } = this.#options;
    if (!(rotateEveryMs > 0 && graceMs >= 0)) throw new InvalidArgument('rotateEveryMs must be above 0, graceMs not below 0');
  }

  /** Makes the first epoch and publishes it. A failed publish does not fail the start: it is retried, and nothing is sealed until then. */
  static async start(options: KeyRingOptions): Promise<KeyRing> {
    const ring = new KeyRing(options);
    ring.#newEpoch();
    await ring.#serial(() => ring.#publish()).catch(() => {}); // logged, retry scheduled
    return ring;
  }

  /** Serves an encrypted network: its SAs with every known peer (the ones it had, if it was removed lately). Again for a served VNI: nothing. */
  addNetwork(vni: number): void {
    this.#checkOpen();
    if (!Number.isInteger(vni) || vni < 0 || vni > 0xffffff) throw new InvalidArgument(`VNI ${vni} is not a 24-bit number`);
    if (this.#parked.has(vni)) {
      this.#options.timers.clear(this.#parked.get(vni));
      this.#parked.delete(vni);
      for (const [address, told] of this.#outbound) {
        const sa = told.get(vni);
        if (sa !== undefined) this.#options.setOutbound(vni, address, sa.spi);
      }
    }
    if (this.#vnis.has(vni)) return;
    this.#vnis.add(vni);
    this.#syncAll();
  }

  /**
   * The network is served no more: the VTEP is told to seal nothing on it
   * at once; its SAs stay GONE_ROTATIONS rotations in case it is served
   * again (a new sandbox), then go.
   */
  removeNetwork(vni: number): void {
    this.#checkOpen();
    if (!this.#vnis.has(vni) || this.#parked.has(vni)) return;
    for (const address of this.#outbound.keys()) this.#options.setOutbound(vni, address, undefined);
    this.#parked.set(
      vni,
      this.#options.timers.set(() => {
        this.#parked.delete(vni);
        this.#vnis.delete(vni);
        this.#guard(`removing the SAs of VNI ${vni}`, () => this.#syncAll());
      }, GONE_ROTATIONS * this.#options.rotateEveryMs),
    );
  }

  /**
   * A peer's host record, from the store's watch. One that is malformed or
   * holds an unusable key is refused: the previous keys stay. Any other is
   * followed, even one whose epochs are older than the last (the store is
   * trusted, and refusing it would make one bad write last until a restart):
   * SAs never made twice keep that safe.
   */
  setPeer(address: string, keys: PublishedKeys): void {
    this.#checkOpen();
    if (address === this.#options.self) return;
    const known = this.#peers.get(address);
    let peer: Peer;
    try {
      peer = this.#readPeer(address, keys, known);
    } catch (err) {
      if (!(err instanceof InvalidArgument)) throw err;
      const kept = known === undefined ? 'no SAs with it' : 'its previous keys stay';
      this.#options.logger.warn(`encrypted overlay: keys of ${address} refused, ${kept}: ${err.message}`);
      return;
    }
    if (known?.goneTimer !== undefined) {
      this.#options.timers.clear(known.goneTimer);
      delete known.goneTimer;
      delete known.goneAt;
    } else if (peer === known) return;
    if (known !== undefined && known.staticShared !== peer.staticShared) known.staticShared.fill(0);
    this.#peers.set(address, peer);
    this.#syncPeer(address);
  }

  /** The peer's record left the store: its SAs stay, its outbound unchanged, for GONE_ROTATIONS rotations unless it comes back. */
  peerGone(address: string): void {
    this.#checkOpen();
    const peer = this.#peers.get(address);
    if (peer === undefined || peer.goneTimer !== undefined) return;
    peer.goneAt = this.#options.now();
    peer.goneTimer = this.#options.timers.set(() => {
      this.#options.logger.info(`encrypted overlay: ${address} gone for ${GONE_ROTATIONS} rotations, its SAs removed`);
      this.#peers.delete(address);
      peer.staticShared.fill(0);
      this.#guard(`removing the SAs with ${address}`, () => this.#syncPeer(address));
    }, GONE_ROTATIONS * this.#options.rotateEveryMs);
  }

  /**
   * Makes and publishes a new epoch now; resolves when it is published,
   * rejects when publishing fails (then retried at the next tick), and with
   * Conflict, doing nothing, within graceMs of the last one.
   */
  async rotate(): Promise<void> {
    this.#checkOpen();
    await this.#serial(() => this.#rotateOnce(true));
  }

  /** The ring's epochs and counters and, given a VNI, the SAs with each peer on that network. No key material. */
  status(vni?: number): KeyRingStatus {
    this.#checkOpen();
    const epochs = this.#epochs.map(({ id, createdAt, publishedAt }) => ({ id, createdAt, ...(publishedAt === undefined ? {} : { publishedAt }) }));
    const ring = { peers: [], epochs, rotations: this.#rotations, spiCollisions: this.#spiCollisions, nextRotationAt: this.#nextRotationAt };
    if (vni === undefined || !this.#vnis.has(vni)) return vni === undefined ? ring : { ...ring, vni };
    const plain = ({ spi, senderEpoch, receiverEpoch, installedAt }: InstalledSa): SaStatus => ({ spi, senderEpoch, receiverEpoch, installedAt });
    const peers = [...this.#peers].map(([address, { goneAt }]): PeerSaStatus => {
      const outbound = this.#outbound.get(address)?.get(vni);
      return {
        peer: address,
        ...(outbound === undefined ? {} : { outbound: plain(outbound) }),
        inbound: [...(this.#inbound.get(address)?.values() ?? [])].filter((sa) => sa.vni === vni).map(plain),
        ...(goneAt === undefined ? {} : { goneAt }),
      };
    });
    return { ...ring, vni, peers };
  }

  /** Stops the timers, removes every SA (the VTEP seals nothing), drops the private keys. Again: nothing; any other call then throws Unavailable. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const handle of [this.#rotationTimer, this.#graceTimer, ...this.#parked.values(), ...[...this.#peers.values()].map((peer) => peer.goneTimer)]) {
      if (handle !== undefined) this.#options.timers.clear(handle);
    }
    this.#vnis.clear();
    this.#parked.clear();
    this.#syncAll();
    for (const peer of this.#peers.values()) peer.staticShared.fill(0);
    this.#peers.clear();
    for (const epoch of this.#epochs.splice(0)) dropEpoch(epoch);
  }

  #checkOpen(): void {
    if (this.#closed) throw new Unavailable('the key ring is closed');
  }

  /** For timer callbacks: nobody is there to catch. */
  #guard(what: string, step: () => void): void {
    try {
      step();
    } catch (err) {
      this.#options.logger.error(`encrypted overlay: ${what} failed: ${(err as Error).message}`);
    }
  }

  #serial(step: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(step);
    this.#queue = run.catch(() => {});
    return run;
  }

  /**
   * One rotation, at most one per graceMs: peers must have had the grace to
   * see the newest epoch before another comes, or they could still be sealing
   * to one that falls off. Asked for too soon (`asked`: the operator's
   * command), it is refused with Conflict; the timer's is put off instead.
   */
  async #rotateOnce(asked: boolean): Promise<void> {
    this.#checkOpen();
    const newest = this.#epochs.at(-1);
    const elapsed = newest?.publishedAt === undefined ? Number.POSITIVE_INFINITY : this.#options.now() - newest.publishedAt;
    // A clock set back (elapsed below 0) must not put renewal off: that is taken as long ago.
    const waitMs = elapsed >= 0 && elapsed < this.#options.graceMs ? this.#options.graceMs - elapsed : 0;
    if (waitMs > 0) {
      if (asked) {
        throw new Conflict(`this host's keys were renewed ${elapsed} ms ago and its peers are still taking them up: renew again in ${Math.ceil(waitMs / 1000)} s`);
      }
      this.#schedule(waitMs);
      return;
    }
    // An epoch whose publish failed is still unused: publish it rather than make another.
    if (newest?.publishedAt !== undefined) this.#newEpoch();
    await this.#publish();
  }

  #newEpoch(): void {
    const previous = this.#epochs.at(-1);
    if (previous !== undefined) this.#rotations++;
    const now = this.#options.now();
    const id = Math.max((previous?.id ?? -1) + 1, Math.floor(now));
    const pair = generateKeyPair();
    this.#epochs.push({ id, createdAt: now, publishedAt: undefined, pair, ephemeralShared: new Map(), sealedWith: new Set(), openedWith: new Set() });
    // Its inbound SAs before anyone can see it.
    this.#syncAll();
  }

  async #publish(): Promise<void> {
    const listed = this.#epochs.slice(-EPOCHS_KEPT);
    const keys: PublishedKeys = {
      static: this.#options.staticKey.publicKey.toString('base64'),
      epochs: listed.map((epoch) => ({ id: epoch.id, public: epoch.pair.publicKey.toString('base64') })),
    };
    try {
      await this.#options.publish(keys);
    } catch (err) {
      if (this.#closed) throw err;
      const retryMs = Math.min(PUBLISH_RETRY_MS, this.#options.rotateEveryMs);
      this.#schedule(retryMs);
      this.#options.logger.warn(`encrypted overlay: publishing this host's keys failed, retry in ${retryMs} ms: ${(err as Error).message}`);
      throw err;
    }
    this.#checkOpen();
    listed[listed.length - 1]!.publishedAt = this.#options.now();
    // The epoch the record no longer lists falls off only now: while a publish fails, peers may still seal to it.
    for (const epoch of this.#epochs.splice(0, this.#epochs.length - listed.length)) dropEpoch(epoch);
    this.#schedule(this.#options.rotateEveryMs);
    this.#switchAfterGrace(listed[listed.length - 1]!);
    this.#syncAll();
  }

  /**
   * Switches the outbound SAs to `epoch` once it is graceMs old by the clock
   * #senderEpoch reads. A timer can fire early by that clock (libuv measures
   * from the start of the loop turn, which a busy turn leaves behind), and
   * nothing else would switch until the next rotation: so it waits again
   * for what is left.
   */
  #switchAfterGrace(epoch: Epoch): void {
    if (this.#graceTimer !== undefined) this.#options.timers.clear(this.#graceTimer);
    this.#graceTimer = undefined;
    const left = this.#options.graceMs - (this.#options.now() - (epoch.publishedAt ?? this.#options.now()));
    if (left <= 0) this.#guard('switching outbound SAs', () => this.#syncAll());
    else this.#graceTimer = this.#options.timers.set(() => this.#switchAfterGrace(epoch), left);
  }

  #schedule(ms: number): void {
    if (this.#rotationTimer !== undefined) this.#options.timers.clear(this.#rotationTimer);
    this.#nextRotationAt = this.#options.now() + ms;
    this.#rotationTimer = this.#options.timers.set(() => {
      this.#rotationTimer = undefined;
      this.#serial(() => this.#rotateOnce(false)).catch((err: unknown) => {
        // A failed publish has logged and scheduled its retry; anything else stops rotation, loudly.
        if (this.#closed || this.#rotationTimer !== undefined) return;
        this.#options.logger.error(`encrypted overlay: rotation failed, no more will be made: ${(err as Error).message}`);
      });
    }, ms);
  }

  #readPeer(address: string, keys: PublishedKeys, known: Peer | undefined): Peer {
    const { staticKey, epochs } = parseKeys(keys);
    const staticText = staticKey.toString('base64');
    const record = JSON.stringify([staticText, epochs.map((epoch) => [epoch.id, epoch.text])]);
    if (record === known?.record) return known;
    // Every DH before anything changes: one low-order key refuses the whole record.
    const staticShared = staticText === known?.staticText ? known.staticShared : sharedSecret(this.#options.staticKey.privateKey, staticKey);
    const computed: [Epoch, PeerEpoch, Buffer][] = [];
    for (const own of this.#epochs) {
      const unknown = epochs.filter((epoch) => !own.ephemeralShared.has(epoch.text));
      for (const epoch of unknown) computed.push([own, epoch, sharedSecret(own.pair.privateKey, epoch.public)]);
    }
    for (const [own, epoch, secret] of computed) own.ephemeralShared.set(epoch.text, secret);
    return { record, staticText, staticShared, epochs };
  }

  #ephemeralShared(own: Epoch, epoch: PeerEpoch): Buffer {
    const secret = own.ephemeralShared.get(epoch.text) ?? sharedSecret(own.pair.privateKey, epoch.public);
    own.ephemeralShared.set(epoch.text, secret);
    return secret;
  }

  #syncAll(): void {
    for (const address of this.#peers.keys()) this.#syncPeer(address);
  }

  /** Brings the SAs with one peer in line with the rules above. */
  #syncPeer(address: string): void {
    const peer = this.#peers.get(address);
    const installed = this.#inbound.get(address) ?? new Map<string, InstalledSa>();
    const wanted = new Map<string, { vni: number; sender: PeerEpoch; receiver: Epoch }>();
    for (const vni of this.#vnis) {
      for (const sender of peer?.epochs ?? []) {
        for (const receiver of this.#epochs) {
          wanted.set(`${vni}/${sender.id}/${receiver.id}/${peer?.staticText}/${sender.text}`, { vni, sender, receiver });
        }
      }
    }
    for (const [material, sa] of installed) {
      if (wanted.has(material)) continue;
      this.#remove('inbound', sa.spi);
      installed.delete(material);
    }
    for (const [material, { vni, sender, receiver }] of wanted) {
      if (peer === undefined || installed.has(material)) continue;
      if (receiver.openedWith.has(`${address}/${material}`)) {
        // Had and removed (its network went for good, then came back): a new epoch of ours gives the peer another to seal to.
        this.#rotateSoon(receiver);
        continue;
      }
      receiver.openedWith.add(`${address}/${material}`);
      const sa = this.#install('inbound', address, peer, vni, receiver, sender, material);
      if (sa !== undefined) installed.set(material, sa);
    }
    if (installed.size > 0) this.#inbound.set(address, installed);
    else this.#inbound.delete(address);
    this.#syncOutbound(address, peer);
  }

  #syncOutbound(address: string, peer: Peer | undefined): void {
    const told = this.#outbound.get(address) ?? new Map<number, InstalledSa | undefined>();
    for (const [vni, current] of told) {
      if (peer !== undefined && this.#vnis.has(vni)) continue;
      told.delete(vni);
      if (current === undefined) continue;
      this.#options.setOutbound(vni, address, undefined);
      this.#remove('outbound', current.spi);
    }
    if (peer === undefined) {
      this.#outbound.delete(address);
      return;
    }
    this.#outbound.set(address, told);
    const sender = this.#senderEpoch();
    const receiver = peer.epochs[peer.epochs.length - 1]!;
    for (const vni of this.#vnis) {
      const parked = this.#parked.has(vni);
      if (!told.has(vni)) {
        told.set(vni, undefined);
        this.#options.setOutbound(vni, address, undefined);
      }
      // A gone peer may not see our new epochs: what it could open, it still can.
      if (sender === undefined || peer.goneTimer !== undefined) continue;
      const identity = `${address}/${vni}/${sender.id}/${receiver.id}`;
      const material = `${vni}/${sender.id}/${receiver.id}/${peer.staticText}/${receiver.text}`;
      const current = told.get(vni);
      if (current?.material === material) continue;
      if (sender.sealedWith.has(identity)) {
        this.#options.logger.info(`encrypted overlay: SA ${identity} was sealed with before; ${vni} to ${address} waits for a new epoch`);
        this.#rotateSoon(sender);
        continue;
      }
      sender.sealedWith.add(identity);
      const sa = this.#install('outbound', address, peer, vni, sender, receiver, material);
      if (sa === undefined) {
        this.#rotateSoon(sender);
        continue;
      }
      told.set(vni, sa);
      if (!parked) this.#options.setOutbound(vni, address, sa.spi);
      // Only once the VTEP seals with the new one.
      if (current !== undefined) this.#remove('outbound', current.spi);
    }
  }

  /**
   * The newest own epoch published at least graceMs ago: peers have had time
   * to install its inbound SAs. When none is that old (at start), the
   * oldest published: there is no older one to seal with meanwhile.
   */
  #senderEpoch(): Epoch | undefined {
    const now = this.#options.now();
    const published = [...this.#epochs].reverse().filter((epoch) => epoch.publishedAt !== undefined);
    return published.find((epoch) => now - epoch.publishedAt! >= this.#options.graceMs) ?? published.at(-1);
  }

  /** An SA that cannot be made with `sender` (made before, or its SPI taken) can with a newer epoch. */
  #rotateSoon(sender: Epoch): void {
    if (sender === this.#epochs.at(-1) && this.#nextRotationAt > this.#options.now()) this.#schedule(0);
  }

  /** Derives the SA, adds it tagged with its VNI; undefined (logged, counted) when its SPI is taken. The table copies the keys: ours are wiped. */
  #install(direction: 'inbound' | 'outbound', address: string, peer: Peer, vni: number, own: Epoch, theirs: PeerEpoch, material: string) {
    const [source, destination, senderEpoch, receiverEpoch] =
      direction === 'inbound' ? [address, this.#options.self, theirs.id, own.id] : [this.#options.self, address, own.id, theirs.id];
    const { spi, key, salt } = deriveSa({
      sender: source, receiver: destination, vni, senderEpoch, receiverEpoch,
      staticShared: peer.staticShared, ephemeralShared: this.#ephemeralShared(own, theirs),
    });
    try {
      // Bound to the peer's address: the key proves who sealed it, and no other host's datagrams may pass for its.
      if (direction === 'inbound') this.#options.table.addInbound({ spi, key, salt, tag: vni, sender: address });
      else this.#options.table.addOutbound({ spi, key, salt, tag: vni });
      this.#options.onSa?.({ direction, source, destination, spi, key: Buffer.from(key), salt: Buffer.from(salt), vni });
      return { spi, vni, senderEpoch, receiverEpoch, installedAt: this.#options.now(), material };
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ESP_SPI_IN_USE') throw err;
      this.#spiCollisions++;
      this.#options.logger.warn(`encrypted overlay: ${direction} SA ${source} → ${destination} on ${vni} skipped, SPI ${spi} is taken`);
      return undefined;
    } finally {
      key.fill(0);
      salt.fill(0);
    }
  }

  /** A closed table has wiped its SAs already (its owner may close it first). */
  #remove(direction: 'inbound' | 'outbound', spi: number): void {
    try {
      this.#options.table.remove(direction, spi);
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ESP_TABLE_CLOSED') throw err;
    }
  }
}

function dropEpoch(epoch: Epoch): void {
  for (const secret of epoch.ephemeralShared.values()) secret.fill(0);
  epoch.ephemeralShared.clear();
}

/** Checks a record another host wrote: 1 to EPOCHS_KEPT epochs, ids increasing, 32-byte keys in canonical base64. */
function parseKeys(keys: PublishedKeys): { staticKey: Buffer; epochs: PeerEpoch[] } {
  const published: unknown = (keys as { epochs?: unknown } | null)?.epochs;
  if (!Array.isArray(published) || published.length === 0 || published.length > EPOCHS_KEPT) {
    throw new InvalidArgument(`a record holds 1 to ${EPOCHS_KEPT} epochs`);
  }
  const epochs: PeerEpoch[] = [];
  for (const entry of published as unknown[]) {
    const { id, public: text } = (entry ?? {}) as { id?: unknown; public?: unknown };
    const previous = epochs.at(-1)?.id ?? -1;
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= previous) {
      throw new InvalidArgument(`epoch id ${String(id)} is not an integer above ${previous}`);
    }
    epochs.push({ id, public: publicKey(text, `epoch ${id}`), text: text as string });
  }
  return { staticKey: publicKey(keys.static, 'the static key'), epochs };
}

function publicKey(text: unknown, what: string): Buffer {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'base64') : Buffer.alloc(0);
  // Canonical only: a lenient decode would give one key many spellings.
  if (bytes.length !== 32 || bytes.toString('base64') !== text) throw new InvalidArgument(`${what} is not 32 bytes of base64`);
  return bytes;
}
