import crypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import test, { type ExecutionContext } from 'ava';
import { Unavailable } from '../../src/errors.js';
import { generateKeyPair, type KeyPair } from '../../src/crypto/keys.js';
import { KeyRing, type KeyRingTimers, type PublishedKeys, type SaKeylogEntry, type SaTable } from '../../src/crypto/keyring.js';
import { ESP_HEADER_LENGTH, EspBatch, type EspSaKeys, EspTable, espSealedLength } from '../../src/sys/esp.js';

const GRACE = 1_000;
const ROTATE = 60_000;
const VNIS = [4096, 4097];

/** A clock whose timers fire only when a test moves it, each followed by the promises it set going. */
class Clock implements KeyRingTimers {
  now = Date.UTC(2025, 0, 1);
  /** The next timer set for `ms` fires `by` early by `now`, as a Node timer can after a long loop turn (libuv measures from the turn's start). */
  early: { ms: number; by: number } | undefined;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();
  #ids = 0;

  set(fn: () => void, ms: number): number {
    const by = this.early?.ms === ms ? this.early.by : 0;
    if (by > 0) this.early = undefined;
    this.#timers.set(++this.#ids, { at: this.now + ms - by, fn });
    return this.#ids;
  }

  clear(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      let due: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.#timers) if (entry[1].at <= end && (due === undefined || entry[1].at < due[1].at)) due = entry;
      if (due === undefined) break;
      this.#timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
      await settle();
    }
    this.now = end;
    await settle();
  }
}

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

type Direction = 'inbound' | 'outbound';
interface StoredSa {
  readonly spi: number;
  readonly key: Buffer;
  readonly salt: Buffer;
  readonly tag: number;
  readonly sender?: string;
}

/** The addon's table in memory: copies what it is given, refuses a second SA on one SPI per direction. */
class MemoryTable implements SaTable {
  readonly sas = { inbound: new Map<number, StoredSa>(), outbound: new Map<number, StoredSa>() };
  /** Every SA ever added. */
  readonly added: (StoredSa & { direction: Direction })[] = [];
  /** Makes the table refuse an SA as if its SPI were taken. */
  refuse: ((direction: Direction, sa: EspSaKeys) => boolean) | undefined;

  addInbound(sa: EspSaKeys): void {
    this.#add('inbound', sa);
  }

  addOutbound(sa: EspSaKeys): void {
    this.#add('outbound', sa);
  }

  remove(direction: Direction, spi: number): boolean {
    return this.sas[direction].delete(spi);
  }

  #add(direction: Direction, sa: EspSaKeys): void {
    if (this.sas[direction].has(sa.spi) || this.refuse?.(direction, sa)) {
      throw Object.assign(new Error(`an ${direction} SA with SPI ${sa.spi} exists`), { code: 'ESP_SPI_IN_USE' });
    }
    const copy = { spi: sa.spi, key: Buffer.from(sa.key), salt: Buffer.from(sa.salt), tag: sa.tag, ...(sa.sender !== undefined ? { sender: sa.sender } : {}) };
    this.sas[direction].set(sa.spi, copy);
    this.added.push({ direction, ...copy });
  }
}

interface Host<Table extends SaTable = MemoryTable> {
  readonly name: string;
  ring: KeyRing;
  readonly table: Table;
  readonly staticKey: KeyPair;
  /** What the VTEP was told, by `${vni} ${peer}`. */
  readonly told: Map<string, number | undefined>;
  /** Every outbound identity (vni, peer, sender epoch, receiver epoch) the VTEP was told to seal with. */
  readonly sealedWith: string[];
  readonly keylog: SaKeylogEntry[];
  readonly warnings: string[];
}

/** Hosts sharing a store: a publish reaches the others at once, unless the test delivers by hand. */
class Cluster {
  readonly clock = new Clock();
  readonly hosts = new Map<string, Host<SaTable>>();
  readonly records = new Map<string, PublishedKeys>();
  /** Off: records wait for deliver(). */
  auto = true;
  /** Links the store does not carry (`from>to`). */
  readonly cut = new Set<string>();
  readonly failing = new Set<string>();
  /** Sees each publish as it starts. */
  onPublish: ((name: string, keys: PublishedKeys) => void) | undefined;

  async add<Table extends SaTable = MemoryTable>(name: string, options: { table?: Table; staticKey?: KeyPair; vnis?: number[] } = {}): Promise<Host<Table>> {
    const table = options.table ?? (new MemoryTable() as unknown as Table);
    const host = {
      name, table, staticKey: options.staticKey ?? generateKeyPair(), told: new Map(), sealedWith: [], keylog: [], warnings: [],
    } as unknown as Host<Table>;
    host.ring = await KeyRing.start({
      self: name,
      staticKey: host.staticKey,
      table,
      setOutbound: (vni, peer, spi) => {
        host.told.set(`${vni} ${peer}`, spi);
        const sa = spi === undefined ? undefined : host.ring.status(vni).peers.find((p) => p.peer === peer)?.outbound;
        if (sa !== undefined) host.sealedWith.push(`${vni} ${peer} ${sa.senderEpoch} ${sa.receiverEpoch}`);
      },
      publish: async (keys) => this.#publish(name, keys),
      onSa: (sa) => host.keylog.push(sa),
      rotateEveryMs: ROTATE,
      graceMs: GRACE,
      now: () => this.clock.now,
      timers: this.clock,
      logger: { debug() {}, info() {}, warn: (line) => host.warnings.push(line), error: (line) => host.warnings.push(line) },
    });
    this.hosts.set(name, host);
    for (const vni of options.vnis ?? VNIS) host.ring.addNetwork(vni);
    for (const [other, keys] of this.records) if (other !== name && !this.cut.has(`${other}>${name}`)) host.ring.setPeer(other, keys);
    return host;
  }

  /** The latest record of `from` reaches `to`. */
  deliver(from: string, to: string): void {
    const keys = this.records.get(from);
    if (keys !== undefined) this.hosts.get(to)?.ring.setPeer(from, keys);
  }

  #publish(name: string, keys: PublishedKeys): void {
    this.onPublish?.(name, keys);
    if (this.failing.has(name)) throw new Error('store unreachable');
    this.records.set(name, keys);
    if (!this.auto) return;
    for (const other of this.hosts.keys()) if (other !== name && !this.cut.has(`${name}>${other}`)) this.deliver(name, other);
  }
}

const outboundSa = (host: Host, vni: number, peer: string) => {
  const spi = host.told.get(`${vni} ${peer}`);
  return spi === undefined ? undefined : host.table.sas.outbound.get(spi);
};

/** `from` seals to `to` on `vni` with an SA that `to` holds inbound: same SPI, key, salt, tag. */
function sealsTo(t: ExecutionContext, from: Host, to: Host, vni: number): void {
  const sa = outboundSa(from, vni, to.name);
  t.truthy(sa, `${from.name} has an outbound SA to ${to.name} on ${vni}`);
  // Bound to the sender's address: no other host's datagrams pass for its, even with a key of their own.
  if (sa !== undefined) t.deepEqual(to.table.sas.inbound.get(sa.spi), { ...sa, tag: vni, sender: from.name });
}

async function pairOfHosts(options: { vnis?: number[] } = {}) {
  const cluster = new Cluster();
  const a = (await cluster.add('198.18.0.1', options)) as Host;
  const b = (await cluster.add('198.18.0.2', options)) as Host;
  // Past the grace of their first epochs: a renewal may follow at once.
  await cluster.clock.advance(GRACE);
  return { cluster, a, b };
}

const keysOf = (...tables: MemoryTable[]) => new Set(tables.flatMap((table) => table.added.map((sa) => sa.key.toString('hex'))));

test('two hosts seal to each other with SAs the other holds inbound; after a renewal, with the new epoch once the grace has passed', async (t) => {
  const cluster = new Cluster();
  const a = (await cluster.add('198.18.0.1')) as Host;
  t.true(a.told.size === 0, 'no peer, nothing to tell');
  const b = (await cluster.add('198.18.0.2')) as Host;
  // At start there is no older epoch to seal with meanwhile: the first is used as soon as it is published.
  for (const vni of VNIS) {
    sealsTo(t, a, b, vni);
    sealsTo(t, b, a, vni);
    t.is(b.ring.status(vni).peers[0]?.inbound.length, 1);
  }
  t.not(outboundSa(a, 4096, b.name)?.spi, outboundSa(a, 4097, b.name)?.spi);
  t.is(a.table.sas.outbound.size, 2);

  await cluster.clock.advance(GRACE);
  const before = outboundSa(a, 4096, b.name);
  await a.ring.rotate();
  await cluster.clock.advance(GRACE - 1);
  t.deepEqual(outboundSa(a, 4096, b.name), before, 'the old epoch until peers have had the grace to see the new one');
  await cluster.clock.advance(1);
  t.notDeepEqual(outboundSa(a, 4096, b.name), before);
  for (const vni of VNIS) sealsTo(t, a, b, vni);
});

test('a grace timer that fires early by the clock still switches the outbound SA, once the grace has passed', async (t) => {
  const { cluster, a, b } = await pairOfHosts();
  const before = outboundSa(a, 4096, b.name);
  cluster.clock.early = { ms: GRACE, by: 50 };
  await a.ring.rotate();
  await cluster.clock.advance(GRACE - 50);
  t.deepEqual(outboundSa(a, 4096, b.name), before, 'the timer fired, but the new epoch is not graceMs old yet');
  await cluster.clock.advance(50);
  t.notDeepEqual(outboundSa(a, 4096, b.name), before, 'it switches once it is, without waiting for another rotation');
  sealsTo(t, a, b, 4096);
});

/** Seals a frame at `from` with the SA its VTEP uses to `to`, opens it at `to`. */
function frameGoesThrough(from: Host<EspTable>, to: Host<EspTable>, vni: number): string {
  const spi = from.told.get(`${vni} ${to.name}`);
  if (spi === undefined) return 'no outbound SA';
  const frame = Buffer.from(`frame from ${from.name} on ${vni}`);
  const batch = new EspBatch(1);
  batch.buffers.push(Buffer.alloc(espSealedLength(frame.length)));
  batch.buffers[0]?.set(frame, ESP_HEADER_LENGTH);
  batch.lengths[0] = frame.length;
  batch.count = 1;
  if (from.table.seal(spi, batch) !== 1) return `sealing: ${batch.result(0)}`;
  if (to.table.open(batch, from.name) !== 1) return `opening: ${batch.result(0)}`;
  if (batch.tags[0] !== vni) return `tag ${batch.tags[0]}`;
  return Buffer.from(batch.plaintext(0)).equals(frame) ? 'ok' : 'another frame';
}

const ROTATION_EVENTS = ['A rotates', 'B rotates', 'A→B', 'B→A'] as const;

function interleavings<T>(items: readonly T[]): T[][] {
  if (items.length === 0) return [[]];
  return items.flatMap((item, i) => interleavings([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

test('with the addon: every frame sealed through rotations opens at the peer, in every order of rotations and record deliveries within the grace', async (t) => {
  // A record reaches the peer after its rotation; the store's watch takes less than the grace.
  const orders = interleavings(ROTATION_EVENTS).filter((order) => order.indexOf('A rotates') < order.indexOf('A→B') && order.indexOf('B rotates') < order.indexOf('B→A'));
  t.is(orders.length, 6);
  for (const order of orders) {
    const cluster = new Cluster();
    const a = await cluster.add('198.18.0.1', { table: EspTable.create() });
    const b = await cluster.add('198.18.0.2', { table: EspTable.create() });
    cluster.auto = false;
    await cluster.clock.advance(GRACE);
    const check = (when: string) => {
      for (const vni of VNIS) {
        t.is(frameGoesThrough(a, b, vni), 'ok', `${order.join(', ')}: A to B on ${vni} ${when}`);
        t.is(frameGoesThrough(b, a, vni), 'ok', `${order.join(', ')}: B to A on ${vni} ${when}`);
      }
    };
    check('at first');
    // Four rounds: the first epochs fall off on the way.
    for (let round = 0; round < 4; round++) {
      for (const event of order) {
        if (event === 'A rotates') await a.ring.rotate();
        else if (event === 'B rotates') await b.ring.rotate();
        else if (event === 'A→B') cluster.deliver(a.name, b.name);
        else cluster.deliver(b.name, a.name);
        check(`after ${event} in round ${round}`);
        await cluster.clock.advance(GRACE / 4);
        check(`${GRACE / 4} ms after ${event} in round ${round}`);
      }
      await cluster.clock.advance(GRACE);
      check(`after round ${round}`);
      t.is(a.ring.status(4096).peers[0]?.outbound?.senderEpoch, a.ring.status(4096).epochs.at(-1)?.id, 'A seals with its newest epoch');
      t.is(a.ring.status(4096).peers[0]?.outbound?.receiverEpoch, b.ring.status(4096).epochs.at(-1)?.id, 'to B\'s newest');
    }
    t.is(a.ring.status(4096).epochs.length, 3);
    for (const host of [a, b]) {
      host.ring.close();
      host.table.close();
    }
  }
});

test('an outbound SA is never made twice: not after a network comes back, a peer returns, or its record goes back', async (t) => {
  const { cluster, a, b } = await pairOfHosts({ vnis: [4096] });
  await cluster.clock.advance(GRACE);
  const stale = cluster.records.get(b.name);
  await b.ring.rotate();
  t.is(a.ring.status(4096).peers[0]?.outbound?.receiverEpoch, b.ring.status(4096).epochs.at(-1)?.id);

  // The network leaves and comes back within one epoch: its SA, kept meanwhile, seals on from where it was.
  const kept = a.told.get(`4096 ${b.name}`);
  a.ring.removeNetwork(4096);
  t.is(a.told.get(`4096 ${b.name}`), undefined, 'nothing sealed while it is not served');
  a.ring.addNetwork(4096);
  t.is(a.told.get(`4096 ${b.name}`), kept);
  t.is(a.ring.status(4096).epochs.length, 1, 'no new epoch needed');
  sealsTo(t, a, b, 4096);
  sealsTo(t, b, a, 4096);

  // The store hands back B's record from before its rotation: followed (B still opens its old epoch), but the
  // SA A sealed with to that epoch is not made again: a new epoch of A's own brings another.
  a.ring.setPeer(b.name, stale!);
  await cluster.clock.advance(0);
  await cluster.clock.advance(GRACE);
  t.is(a.ring.status(4096).peers[0]?.outbound?.receiverEpoch, stale!.epochs.at(-1)?.id);
  sealsTo(t, a, b, 4096);
  // A bad write (an epoch B never made) lasts only until B's own record is back: then A seals to B again.
  const bogus = { ...cluster.records.get(b.name)!, epochs: [...cluster.records.get(b.name)!.epochs, { id: Date.UTC(2030, 0, 1), public: generateKeyPair().publicKey.toString('base64') }] };
  a.ring.setPeer(b.name, bogus);
  t.is(a.ring.status(4096).peers[0]?.outbound?.receiverEpoch, Date.UTC(2030, 0, 1));
  await b.ring.rotate();
  await cluster.clock.advance(0);
  await cluster.clock.advance(GRACE);
  sealsTo(t, a, b, 4096);

  // B is gone long enough to be forgotten, then its (unchanged) record comes back.
  cluster.cut.add(`${b.name}>${a.name}`);
  a.ring.peerGone(b.name);
  await cluster.clock.advance(3 * ROTATE);
  t.deepEqual(a.ring.status(4096).peers, []);
  cluster.deliver(b.name, a.name);
  cluster.cut.clear();
  await cluster.clock.advance(GRACE);
  sealsTo(t, a, b, 4096);

  // Told again after the network came back, but made once: no key among the outbound SAs added repeats.
  t.true(new Set(a.sealedWith).size >= 3, a.sealedWith.join('\n'));
  const outboundKeys = a.table.added.filter((sa) => sa.direction === 'outbound').map((sa) => sa.key.toString('hex'));
  t.is(new Set(outboundKeys).size, outboundKeys.length);
  t.is(a.table.added.length, keysOf(a.table).size, 'no inbound SA installed twice either: its replay window would start over');
});

test('a record with a bad key is refused and the peer\'s previous keys stay; the same record again changes nothing', async (t) => {
  const { cluster, a, b } = await pairOfHosts();
  await cluster.clock.advance(GRACE);
  const good = cluster.records.get(b.name)!;
  const epoch = good.epochs[0]!;
  const lowOrder = Buffer.alloc(32);
  lowOrder[0] = 1;
  const bad: [string, unknown][] = [
    ['static of 31 bytes', { ...good, static: Buffer.alloc(31, 9).toString('base64') }],
    ['static of low order', { ...good, static: lowOrder.toString('base64') }],
    ['epoch key of zeros', { ...good, epochs: [{ id: epoch.id + 1, public: Buffer.alloc(32).toString('base64') }] }],
    ['epoch key not base64', { ...good, epochs: [{ id: epoch.id + 1, public: `${'!'.repeat(43)}=` }] }],
    ['epoch key in url-safe base64', { ...good, epochs: [{ id: epoch.id + 1, public: Buffer.alloc(32, 0xff).toString('base64url') }] }],
    ['no epochs', { ...good, epochs: [] }],
    ['four epochs', { ...good, epochs: [1, 2, 3, 4].map((id) => ({ ...epoch, id: epoch.id + id })) }],
    ['ids going down', { ...good, epochs: [{ ...epoch, id: epoch.id + 2 }, { ...epoch, id: epoch.id + 1 }] }],
    ['id not a number', { ...good, epochs: [{ ...epoch, id: '7' }] }],
    ['null', null],
  ];
  const before = a.ring.status(4096);
  const added = a.table.added.length;
  const told = new Map(a.told);
  for (const [what, record] of bad) {
    const warnings = a.warnings.length;
    t.notThrows(() => a.ring.setPeer(b.name, record as PublishedKeys), what);
    t.is(a.warnings.length, warnings + 1, what);
    t.regex(a.warnings.at(-1) ?? '', /keys of 198\.18\.0\.2 refused, its previous keys stay/, what);
  }
  a.ring.setPeer(b.name, structuredClone(good));
  t.deepEqual(a.ring.status(4096), before);
  t.is(a.table.added.length, added);
  t.deepEqual(a.told, told);
  for (const vni of VNIS) sealsTo(t, a, b, vni);
});

test('a peer whose state directory was wiped comes back with another static key: the SAs are derived anew', async (t) => {
  const { cluster, a, b } = await pairOfHosts();
  await cluster.clock.advance(GRACE);
  b.ring.close();
  await cluster.clock.advance(10);
  const reborn = (await cluster.add(b.name)) as Host;
  t.notDeepEqual(reborn.staticKey.publicKey, b.staticKey.publicKey);
  await cluster.clock.advance(GRACE);
  for (const vni of VNIS) {
    sealsTo(t, a, reborn, vni);
    sealsTo(t, reborn, a, vni);
  }
  t.is(a.ring.status(4096).peers[0]?.inbound.length, 1, 'the old ones are gone');
});

test('a peer gone from the store keeps its SAs for 3 rotations, unless it comes back', async (t) => {
  const { cluster, a, b } = await pairOfHosts();
  await cluster.clock.advance(GRACE);
  cluster.cut.add(`${b.name}>${a.name}`);
  const sealing = outboundSa(a, 4096, b.name);
  a.ring.peerGone(b.name);
  t.is(typeof a.ring.status(4096).peers[0]?.goneAt, 'number');
  await cluster.clock.advance(3 * ROTATE - 1);
  t.deepEqual(outboundSa(a, 4096, b.name), sealing, 'it may not see our new epochs: what it could open, it still can');
  t.true(a.table.sas.inbound.size > 0);
  await cluster.clock.advance(1);
  t.is(a.table.sas.inbound.size, 0);
  t.is(a.table.sas.outbound.size, 0);
  for (const vni of VNIS) t.is(a.told.get(`${vni} ${b.name}`), undefined);

  const second = await pairOfHosts();
  await second.cluster.clock.advance(GRACE);
  second.cluster.cut.add(`${second.b.name}>${second.a.name}`);
  second.a.ring.peerGone(second.b.name);
  await second.cluster.clock.advance(ROTATE);
  second.a.ring.setPeer(second.b.name, second.cluster.records.get(second.b.name)!);
  t.is(second.a.ring.status(4096).peers[0]?.goneAt, undefined);
  second.cluster.cut.clear();
  await second.cluster.clock.advance(3 * ROTATE);
  for (const vni of VNIS) sealsTo(t, second.a, second.b, vni);
});

test('removing a network stops sealing on it at once and removes its SAs after 3 rotations; adding one installs its SAs with every peer', async (t) => {
  const { cluster, a, b } = await pairOfHosts();
  const c = (await cluster.add('198.18.0.3')) as Host;
  await cluster.clock.advance(GRACE);
  a.ring.removeNetwork(4096);
  for (const peer of [b, c]) {
    t.is(a.told.get(`4096 ${peer.name}`), undefined);
    sealsTo(t, a, peer, 4097);
  }
  t.true([...a.table.sas.inbound.values()].some((sa) => sa.tag === 4096), 'kept for a sandbox joining again soon');
  await cluster.clock.advance(3 * ROTATE);
  t.false([...a.table.sas.inbound.values(), ...a.table.sas.outbound.values()].some((sa) => sa.tag === 4096));
  t.deepEqual(a.ring.status(4096).peers, []);
  for (const peer of [b, c]) sealsTo(t, a, peer, 4097);

  for (const host of [a, b, c]) host.ring.addNetwork(4098);
  t.deepEqual(a.ring.status(4098).peers.map((peer) => peer.inbound.length > 0), [true, true]);
  for (const [from, to] of [[a, b], [b, c], [c, a], [a, c]] as const) sealsTo(t, from, to, 4098);

  // Back after its SAs went, within epochs that had them: those are not made again, a new epoch brings new ones.
  a.ring.addNetwork(4096);
  await cluster.clock.advance(0);
  await cluster.clock.advance(GRACE);
  for (const peer of [b, c]) {
    sealsTo(t, a, peer, 4096);
    sealsTo(t, peer, a, 4096);
  }
});

test('an SPI the table already has is logged, counted and skipped, never thrown', async (t) => {
  const cluster = new Cluster();
  const a = (await cluster.add('198.18.0.1')) as Host;
  let refusals = 0;
  a.table.refuse = (direction, sa) => direction === 'inbound' && sa.tag === 4097 && refusals++ === 0;
  const b = (await cluster.add('198.18.0.2')) as Host;
  t.is(a.ring.status(4097).spiCollisions, 1);
  t.is(a.ring.status(4097).peers[0]?.inbound.length, 0);
  t.is(a.ring.status(4096).peers[0]?.inbound.length, 1);
  t.regex(a.warnings.join('\n'), /inbound SA 198\.18\.0\.2 → 198\.18\.0\.1 on 4097 skipped, SPI \d+ is taken/);

  // An outbound SPI taken when B renews: A seals on with the SA B still opens, and a new epoch of its own, made at once, brings another.
  await cluster.clock.advance(GRACE);
  const before = outboundSa(a, 4096, b.name);
  let outboundRefusals = 0;
  a.table.refuse = (direction) => direction === 'outbound' && outboundRefusals++ === 0;
  await b.ring.rotate();
  t.is(a.ring.status(4096).spiCollisions, 2);
  t.deepEqual(outboundSa(a, 4096, b.name), before);
  for (const vni of VNIS) sealsTo(t, a, b, vni);
  await cluster.clock.advance(0);
  t.is(a.ring.status(4096).epochs.length, 2, 'a new epoch at once');
  await cluster.clock.advance(GRACE);
  t.notDeepEqual(outboundSa(a, 4096, b.name), before);
  for (const vni of VNIS) sealsTo(t, a, b, vni);
});

test('an epoch falls off after 3 rotations, its inbound SAs with it; epoch ids only grow', async (t) => {
  const { cluster, a } = await pairOfHosts();
  const first = a.ring.status(4096).epochs[0]!;
  const firstSpis = a.ring.status(4096).peers[0]!.inbound.map((sa) => sa.spi);
  t.is(first.id, cluster.clock.now - GRACE, 'made at start, a grace ago');
  for (let rotation = 1; rotation <= 3; rotation++) {
    await cluster.clock.advance(rotation === 1 ? ROTATE - GRACE : ROTATE);
    const status = a.ring.status(4096);
    t.is(status.rotations, rotation);
    t.is(status.epochs.length, Math.min(rotation + 1, 3));
    t.is(status.nextRotationAt, cluster.clock.now + ROTATE);
  }
  const status = a.ring.status(4096);
  t.false(status.epochs.some((epoch) => epoch.id === first.id));
  t.false(status.peers[0]!.inbound.some((sa) => sa.receiverEpoch === first.id));
  for (const spi of firstSpis) t.false(a.table.sas.inbound.has(spi));
  t.is(status.peers[0]!.inbound.length, 3 * 3, 'its 3 epochs by ours');
  t.deepEqual(a.ring.status(), { peers: [], epochs: status.epochs, rotations: 3, spiCollisions: 0, nextRotationAt: status.nextRotationAt });

  // The clock stands still (or went back): ids still grow.
  const last = status.epochs.at(-1)!.id;
  cluster.clock.now -= 5_000;
  await a.ring.rotate();
  cluster.clock.now -= 5_000;
  await a.ring.rotate();
  t.deepEqual(a.ring.status(4096).epochs.map((epoch) => epoch.id), [last, last + 1, last + 2]);
});

test('a new epoch\'s inbound SAs are in the table before it is published', async (t) => {
  const { cluster, a, b } = await pairOfHosts();
  const seen: number[] = [];
  cluster.onPublish = (name, keys) => {
    if (name !== a.name) return;
    const newest = keys.epochs.at(-1)!.id;
    seen.push(a.ring.status(4097).peers[0]!.inbound.filter((sa) => sa.receiverEpoch === newest).length);
  };
  await a.ring.rotate();
  await b.ring.rotate();
  await cluster.clock.advance(GRACE);
  await a.ring.rotate();
  t.deepEqual(seen, [1, 2], 'one per epoch B publishes');
});

test('while a publish fails, the epoch it would push out stays, with its inbound SAs', async (t) => {
  const { cluster, a } = await pairOfHosts();
  await a.ring.rotate();
  await cluster.clock.advance(GRACE);
  await a.ring.rotate();
  await cluster.clock.advance(GRACE);
  const oldest = a.ring.status(4096).epochs[0]!.id;
  cluster.failing.add(a.name);
  await t.throwsAsync(a.ring.rotate());
  t.is(a.ring.status().epochs.length, 4);
  t.true(a.ring.status(4096).peers[0]!.inbound.some((sa) => sa.receiverEpoch === oldest), 'peers cut off for two rotations may still seal to it');
  cluster.failing.clear();
  await a.ring.rotate();
  t.deepEqual(a.ring.status().epochs.map((epoch) => epoch.id).includes(oldest), false);
  t.is(a.ring.status().epochs.length, 3);
  t.false(a.ring.status(4096).peers[0]!.inbound.some((sa) => sa.receiverEpoch === oldest));
});

test('an epoch whose publish failed is not sealed with; publishing is retried and the epoch used after the grace', async (t) => {
  const { cluster, a, b } = await pairOfHosts();
  await cluster.clock.advance(GRACE);
  const sealing = outboundSa(a, 4096, b.name);
  cluster.failing.add(a.name);
  await t.throwsAsync(a.ring.rotate(), { message: 'store unreachable' });
  let status = a.ring.status(4096);
  t.is(status.epochs.length, 2);
  t.is(status.epochs[1]?.publishedAt, undefined);
  t.is(status.nextRotationAt, cluster.clock.now + 5_000);
  await cluster.clock.advance(5_000 + GRACE);
  t.deepEqual(outboundSa(a, 4096, b.name), sealing);
  t.is(a.ring.status(4096).epochs.length, 2, 'retries publish the same epoch, make no other');
  t.regex(a.warnings.at(-1) ?? '', /publishing this host's keys failed, retry in 5000 ms: store unreachable/);
  cluster.failing.delete(a.name);
  await cluster.clock.advance(5_000 - GRACE);
  status = a.ring.status(4096);
  t.is(status.epochs[1]?.publishedAt, cluster.clock.now);
  t.is(status.nextRotationAt, status.epochs[1]!.publishedAt! + ROTATE);
  t.deepEqual(outboundSa(a, 4096, b.name), sealing, 'not before the grace');
  await cluster.clock.advance(GRACE);
  t.is(a.ring.status(4096).peers[0]?.outbound?.senderEpoch, status.epochs[1]?.id);
  sealsTo(t, a, b, 4096);
});

test('a start whose publish fails still starts; nothing is sealed until it is published', async (t) => {
  const cluster = new Cluster();
  cluster.failing.add('198.18.0.1');
  const a = (await cluster.add('198.18.0.1')) as Host;
  const b = (await cluster.add('198.18.0.2')) as Host;
  t.regex(a.warnings.join('\n'), /publishing this host's keys failed, retry in 5000 ms/);
  await cluster.clock.advance(GRACE);
  t.is(outboundSa(a, 4096, b.name), undefined);
  t.is(a.ring.status(4096).epochs[0]?.publishedAt, undefined);
  cluster.failing.clear();
  await cluster.clock.advance(5_000 - GRACE);
  sealsTo(t, b, a, 4096);
  sealsTo(t, a, b, 4096);
});

test('close removes every SA, stops sealing and the timers; later calls throw', async (t) => {
  const { cluster, a, b } = await pairOfHosts();
  await cluster.clock.advance(GRACE);
  a.ring.close();
  a.ring.close();
  t.is(a.table.sas.inbound.size + a.table.sas.outbound.size, 0);
  t.deepEqual([...a.told.values()], [undefined, undefined]);
  const added = a.table.added.length;
  await cluster.clock.advance(10 * ROTATE);
  t.is(a.table.added.length, added);
  const closed = { instanceOf: Unavailable, code: 'Unavailable' } as const;
  t.throws(() => a.ring.setPeer(b.name, cluster.records.get(b.name)!), closed);
  t.throws(() => a.ring.addNetwork(4098), closed);
  t.throws(() => a.ring.status(4096), closed);
  t.throws(() => a.ring.peerGone(b.name), closed);
  await t.throwsAsync(a.ring.rotate(), closed);
});

test('a third host with both records derives none of the keys between the other two', async (t) => {
  const { cluster, a, b } = await pairOfHosts();
  const c = (await cluster.add('198.18.0.3')) as Host;
  await cluster.clock.advance(ROTATE + GRACE);
  const between = new Set(
    [...a.keylog, ...b.keylog].filter((sa) => sa.destination !== c.name && sa.source !== c.name).map((sa) => sa.key.toString('hex')),
  );
  t.true(between.size > 10);
  for (const key of keysOf(c.table)) t.false(between.has(key));
  t.true(c.keylog.length > 10);
});

test('status holds no key material', async (t) => {
  const { cluster, a, b } = await pairOfHosts();
  await cluster.clock.advance(2 * ROTATE + GRACE);
  const secrets = [...a.keylog, ...b.keylog].flatMap((sa) => [sa.key, sa.salt].flatMap((bytes) => [bytes.toString('hex'), bytes.toString('base64')]));
  t.true(secrets.length > 40);
  for (const host of [a, b]) {
    for (const vni of VNIS) {
      const text = JSON.stringify(host.ring.status(vni));
      t.regex(text, /"spi":/);
      for (const secret of secrets) t.false(text.includes(secret));
    }
  }
});

test('Diffie-Hellman results are cached: a record with one new epoch costs one X25519 per own epoch', async (t) => {
  const { cluster, a, b } = await pairOfHosts();
  cluster.cut.add(`${b.name}>${a.name}`);
  await b.ring.rotate();
  await cluster.clock.advance(GRACE);
  await a.ring.rotate();
  let calls = 0;
  const original = crypto.diffieHellman;
  crypto.diffieHellman = ((...args: Parameters<typeof original>) => {
    calls++;
    return original(...args);
  }) as typeof original;
  syncBuiltinESMExports();
  t.teardown(() => {
    crypto.diffieHellman = original;
    syncBuiltinESMExports();
  });
  cluster.deliver(b.name, a.name);
  t.is(calls, 2, 'the new epoch with each of our 2; the static one and the old epoch are known');
  a.ring.addNetwork(4098);
  t.is(calls, 2);
  t.is(a.ring.status(4098).peers[0]?.inbound.length, 2 * 2);
});

test('renewals come at most one per grace: one asked for sooner is refused with Conflict and changes nothing', async (t) => {
  const { cluster, a } = await pairOfHosts();
  await a.ring.rotate();
  const epochs = a.ring.status().epochs;
  await t.throwsAsync(a.ring.rotate(), { code: 'Conflict', message: /renewed 0 ms ago and its peers are still taking them up: renew again in 1 s/ });
  t.deepEqual(a.ring.status().epochs, epochs);
  await cluster.clock.advance(GRACE);
  await a.ring.rotate();
  t.is(a.ring.status().epochs.length, epochs.length + 1);
});
