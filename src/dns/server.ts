/**
 * The embedded DNS server's query handling, transport-agnostic: the
 * listener (one per sandbox, at 127.0.0.11:53 in its namespace) hands over
 * each query with the sandbox that sent it and writes back what `handle`
 * returns. One server serves every sandbox of the daemon.
 *
 * Behaviour follows libnetwork's resolver (ServeDNS):
 * - A, AAAA and PTR for names in the record table are answered here, A and
 *   AAAA shuffled for round robin; a table name without records of the type
 *   asked, or asked for any other type, gets NOERROR with no answer (NODATA)
 *   rather than being forwarded, so container names never leak upstream.
 * - Every other name is forwarded and the upstream reply relayed as it is,
 *   NXDOMAIN included. When it cannot be forwarded (no upstreams, or a
 *   sandbox only on internal networks) or every upstream failed, the answer
 *   is SERVFAIL, as Docker answers: the server cannot tell that the name
 *   does not exist, only that it cannot find out. Too many forwards in
 *   flight: REFUSED, as Docker does.
 * - Responses (QR=1) are dropped, never answered, so two servers cannot
 *   bounce messages off each other (miekg/dns, under Docker's resolver,
 *   ignores them too); other opcodes get NOTIMP; a query without exactly
 *   one question, or one that does not decode, FORMERR; fewer than 12 bytes
 *   are dropped.
 *
 * The query nearly every client sends, one A or AAAA question with at most a
 * plain OPT record (see `commonQueryNameEnd`), for a name with addresses in
 * the table, is answered on a fast path: read by hand rather than decoded
 * whole with dns-packet, its answer records encoded once per table
 * generation, the reply built in the same turn. It gives the bytes and the
 * observation the general path would give; whatever it does not take
 * (NODATA, names not in the table, replies that need truncating) goes the
 * general way. A UDP listener may have it read the query where it was
 * received and write the reply where it will be sent (`answerInto`): then
 * nothing is allocated for a query but the observation reported, so at a
 * high query rate the garbage collector stops the event loop rarely (each
 * stop delays every query waiting).
 */
import { decode } from 'dns-packet';
import type { Forwarder } from './forwarder.js';
import {
  CLASS_IN,
  Flag,
  HEADER_LENGTH,
  OPT_FLAGS,
  OPT_FLAG_DO,
  OPT_UDP_SIZE,
  Rcode,
  RecordType,
  UDP_DEFAULT_SIZE,
  UDP_MAX_SIZE,
  aRecord,
  aaaaRecord,
  buildReply,
  commonQueryNameEnd,
  optRecord,
  ptrRecord,
  questionName,
  scanQuestion,
} from './message.js';
import type { RawQuestion } from './message.js';
import type { RecordTable } from './records.js';
import { MAX_TCP_MESSAGE } from './tcp.js';
import { type Logger, silentLogger } from '../log.js';

export interface DnsServerOptions {
  table: RecordTable;
  /** Upstream forwarding; without one, names not in the table get SERVFAIL. The server closes it on `stop`. */
  forwarder?: Forwarder;
  /** TTL of the answers from the table, in seconds; default 600 (Docker's). */
  ttl?: number;
  logger?: Logger;
  /** Told about every query once it is answered or dropped (for metrics); it must not throw. */
  onQuery?: (query: DnsQueryObservation) => void;
  /** Uniform in [0, 1), drawn from by the round-robin shuffle; default Math.random (tests seed it). */
  random?: () => number;
  /** False sends every query the general way; default true. Tests compare the two paths with it. */
  fastPath?: boolean;
}

/**
 * How a query ended: `answered` from the table, `nodata` a table name without
 * records of the type asked, `forwarded` an upstream reply relayed (`nxdomain`
 * when it says the name does not exist), `servfail` and `refused` as the
 * module comment says, `malformed` FORMERR, NOTIMP or BADVERS, `dropped` no reply.
 */
export type DnsQueryResult = 'answered' | 'nodata' | 'forwarded' | 'nxdomain' | 'servfail' | 'refused' | 'malformed' | 'dropped';

export interface DnsQueryObservation {
  readonly result: DnsQueryResult;
  readonly transport: 'udp' | 'tcp';
  /** From `handle` being called to the reply (or the drop). */
  readonly seconds: number;
  /** This many queries alike (replies the addon gave again, counted in bulk); 1 when absent. */
  readonly count?: number;
}

export interface QueryContext {
  /** The sandbox whose listener received the query. */
  sandboxId: string;
  transport: 'udp' | 'tcp';
  /** False for a sandbox only on internal networks: no external resolution. */
  mayForward: boolean;
}

interface ClientOpt {
  udpSize: number;
  version: number;
  dnssecOk: boolean;
}

interface Query {
  id: number;
  /** Opcode, RD and CD, as replies copy them. */
  echoedFlags: number;
  question: RawQuestion;
  opt: ClientOpt | undefined;
}

type Parsed = { kind: 'drop' } | { kind: 'error'; reply: Buffer } | { kind: 'query'; query: Query };

interface Outcome {
  result: DnsQueryResult;
  reply?: Buffer;
}

/** Encoded answer records for one question as one sandbox sees it, and their total length. */
interface CachedAnswer {
  /** The question's name and type as wire bytes, ASCII folded to lowercase: the question it answers. */
  readonly key: Buffer;
  readonly records: readonly Buffer[];
  readonly length: number;
  /** Another answer whose key hashes the same. */
  readonly next: CachedAnswer | undefined;
}

const NO_ANSWER: CachedAnswer = { key: Buffer.alloc(0), records: [], length: 0, next: undefined };

/** The header flags a reply copies from the query. */
const ECHOED_FLAGS = Flag.OPCODE | Flag.RD | Flag.CD;
/** The OPT records the general path puts in a reply without an extended rcode, made once for the fast path. */
const REPLY_OPT = optRecord({ udpSize: UDP_MAX_SIZE, extendedRcode: 0, version: 0, dnssecOk: false });
const REPLY_OPT_DO = optRecord({ udpSize: UDP_MAX_SIZE, extendedRcode: 0, version: 0, dnssecOk: true });

/** Query sections beyond these are refused, as miekg/dns refuses them: a query carries no more. */
const MAX_ANSWERS = 1;
const MAX_AUTHORITIES = 1;
const MAX_ADDITIONALS = 2;
/** The smallest a question (root name, type, class) and a resource record can be. */
const MIN_QUESTION = 5;
const MIN_RECORD = 11;

function headerOnly(id: number, echoedFlags: number, rcode: number): Buffer {
  return buildReply({ id, flags: echoedFlags | rcode, answers: [] });
}

/** Checks the header and sections before anything is answered; see the module comment for the outcomes. */
function parseQuery(message: Buffer): Parsed {
  if (message.length < HEADER_LENGTH) return { kind: 'drop' };
  const id = message.readUInt16BE(0);
  const flags = message.readUInt16BE(2);
  if ((flags & Flag.QR) !== 0) return { kind: 'drop' };
  const echoedFlags = flags & ECHOED_FLAGS;
  const formErr: Parsed = { kind: 'error', reply: headerOnly(id, echoedFlags, Rcode.FORMERR) };
  if ((flags & Flag.OPCODE) !== 0) return { kind: 'error', reply: headerOnly(id, echoedFlags, Rcode.NOTIMP) };

  const questions = message.readUInt16BE(4);
  const answers = message.readUInt16BE(6);
  const authorities = message.readUInt16BE(8);
  const additionals = message.readUInt16BE(10);
  if (questions !== 1 || answers > MAX_ANSWERS || authorities > MAX_AUTHORITIES || additionals > MAX_ADDITIONALS) {
    return formErr;
  }
  // Counts that cannot fit the message are refused before any decoding work.
  if (HEADER_LENGTH + questions * MIN_QUESTION + (answers + authorities + additionals) * MIN_RECORD > message.length) {
    return formErr;
  }
  const question = scanQuestion(message);
  if (!question) return formErr;

  let opt: ClientOpt | undefined;
  try {
    const decoded = decode(message);
    const opts = (decoded.additionals ?? []).flatMap((record) => (record.type === 'OPT' ? [record] : []));
    // RFC 6891 §6.1.1: one OPT at most, owned by the root.
    if (opts.length > 1) return formErr;
    const [record] = opts;
    if (record) {
      if (record.name !== '.') return formErr;
      opt = { udpSize: record.udpPayloadSize, version: record.ednsVersion, dnssecOk: record.flag_do };
    }
  } catch {
    return formErr;
  }
  return { kind: 'query', query: { id, echoedFlags, question, opt } };
}

/** The most a UDP reply may hold: 512 without EDNS, else the client's size within 512…4096 (RFC 6891 §6.2.5). */
function udpLimit(udpSize: number | undefined): number {
  return udpSize !== undefined ? Math.min(Math.max(udpSize, UDP_DEFAULT_SIZE), UDP_MAX_SIZE) : UDP_DEFAULT_SIZE;
}

const ASCII_A = 0x41;
const ASCII_Z = 0x5a;
const ASCII_LOWERCASE = 0x20;

/**
 * FNV-1a of message[from, to) with ASCII folded to lowercase, kept within
 * 30 bits so that it is a small integer on every V8 build (a map key that
 * costs no allocation).
 */
function foldedHash(message: Buffer, from: number, to: number): number {
  let hash = 0x811c9dc5;
  for (let i = from; i < to; i++) {
    const byte = message[i]!;
    hash = Math.imul(hash ^ (byte >= ASCII_A && byte <= ASCII_Z ? byte | ASCII_LOWERCASE : byte), 0x01000193);
  }
  return hash & 0x3fffffff;
}

/** Whether message[from, to), ASCII folded to lowercase, is `key`. */
function foldedEquals(key: Buffer, message: Buffer, from: number, to: number): boolean {
  if (key.length !== to - from) return false;
  for (let i = 0; i < key.length; i++) {
    const byte = message[from + i]!;
    if (key[i] !== (byte >= ASCII_A && byte <= ASCII_Z ? byte | ASCII_LOWERCASE : byte)) return false;
  }
  return true;
}

function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/**
 * The embedded DNS server. `stop` waits for queries in flight (closing the
 * forwarder, which ends forwards at once); `handle` after `stop` drops.
 */
export class DnsServer {
  readonly #table: RecordTable;
  readonly #forwarder: Forwarder | undefined;
  readonly #ttl: number;
  readonly #logger: Logger;
  readonly #onQuery: ((query: DnsQueryObservation) => void) | undefined;
  readonly #random: () => number;
  readonly #fastPath: boolean;
  readonly #inFlight = new Set<Promise<Buffer | undefined>>();
  /** Sandbox → foldedHash of the question's name and type (as wire bytes) → answers, for table generation `#cachedGeneration`. */
  readonly #answerCache = new Map<string, Map<number, CachedAnswer>>();
  #cachedGeneration = -1;
  /**
   * What `#prepareCommon` found for the query it took, for `#writeCommon`
   * right after: fields rather than a result object made per query.
   */
  #preparedAnswer = NO_ANSWER;
  #preparedNameEnd = 0;
  #preparedOpt: Buffer | undefined;
  /** The shuffle's scratch: an order of the records of the reply being written, grown to the largest answer seen. */
  #order = new Uint32Array(16);
  #stopped = false;

  constructor(opts: DnsServerOptions) {
    this.#table = opts.table;
    this.#forwarder = opts.forwarder;
    this.#ttl = opts.ttl ?? 600;
    this.#logger = opts.logger ?? silentLogger;
    this.#onQuery = opts.onQuery;
    this.#random = opts.random ?? Math.random;
    this.#fastPath = opts.fastPath ?? true;
  }

  /**
   * The reply to one query from a sandbox, or undefined to send nothing.
   * Never rejects: whatever the bytes, the answer is a reply or a drop.
   * Over UDP a reply that exceeds the client's size comes back truncated
   * (TC set, the question and OPT only); over TCP it is whole, and the
   * caller frames it (see `frameTcp`). A query the fast path takes is
   * answered, and observed, before `handle` returns.
   */
  handle(query: Buffer, ctx: QueryContext): Promise<Buffer | undefined> {
    const common = this.answerNow(query, ctx);
    if (common !== undefined) return Promise.resolve(common);
    if (this.#stopped) return Promise.resolve(undefined);
    const start = performance.now();
    const work = this.#handle(query, ctx)
      .catch((error: unknown): Outcome => {
        this.#logger.warn(`dns: query from sandbox ${ctx.sandboxId} failed: ${(error as Error).message}`);
        return { result: 'dropped' };
      })
      .then(({ result, reply }) => {
        this.#onQuery?.({ result, transport: ctx.transport, seconds: (performance.now() - start) / 1000 });
        return reply;
      });
    this.#inFlight.add(work);
    void work.finally(() => this.#inFlight.delete(work));
    return work;
  }

  /**
   * The reply to the common question (one A or AAAA for a name in the
   * table; see readCommonQuery) at once, observed as answered; undefined
   * for any other query, which then goes to `handle`. A listener that asks
   * this first sends the reply in the same turn, without a promise per query.
   * Nothing of `query` is kept, so its memory may be reused once this returns.
   */
  answerNow(query: Buffer, ctx: QueryContext): Buffer | undefined {
    if (this.#stopped || !this.#fastPath) return undefined;
    const start = performance.now();
    const length = this.#prepareCommon(query, 0, query.length, ctx.sandboxId, ctx.transport);
    if (length === 0) return undefined;
    const reply = Buffer.allocUnsafe(length);
    this.#writeCommon(query, 0, reply, 0);
    this.#onQuery?.({ result: 'answered', transport: ctx.transport, seconds: (performance.now() - start) / 1000 });
    return reply;
  }

  /**
   * `answerNow` for a UDP query read where it was received, message[start,
   * end) of a listener's receive memory: the reply is written into `out`
   * at `at`, and its length returned; 0 when the query is not taken (nor
   * then observed), or `out` has no room for its reply, and it goes to
   * `handle` instead. Nothing but the observation is allocated for a query
   * taken, and nothing of `message` is kept.
   */
  answerInto(message: Buffer, start: number, end: number, sandboxId: string, out: Buffer, at: number): number {
    if (this.#stopped || !this.#fastPath) return 0;
    const began = performance.now();
    const length = this.#prepareCommon(message, start, end, sandboxId, 'udp');
    if (length === 0 || length > out.length - at) return 0;
    this.#writeCommon(message, start, out, at);
    this.#onQuery?.({ result: 'answered', transport: 'udp', seconds: (performance.now() - began) / 1000 });
    return length;
  }

  /** Stops answering, ends forwards in flight, and waits for queries in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#forwarder?.close();
    await Promise.allSettled([...this.#inFlight]);
  }

  async #handle(message: Buffer, ctx: QueryContext): Promise<Outcome> {
    const parsed = parseQuery(message);
    if (parsed.kind === 'drop') return { result: 'dropped' };
    if (parsed.kind === 'error') return { result: 'malformed', reply: parsed.reply };
    const { query } = parsed;
    const limit = ctx.transport === 'tcp' ? MAX_TCP_MESSAGE : udpLimit(query.opt?.udpSize);

    // RFC 6891 §6.1.3: only EDNS version 0 exists.
    if (query.opt && query.opt.version !== 0) {
      return { result: 'malformed', reply: this.#reply(query, Flag.RA | (Rcode.BADVERS & Flag.RCODE), [], Rcode.BADVERS >> 4) };
    }

    const answers = this.#answerLocally(query.question, ctx.sandboxId);
    if (answers) {
      return { result: answers.length > 0 ? 'answered' : 'nodata', reply: this.#fit(query, Flag.RA | Rcode.NOERROR, answers, limit) };
    }

    if (!this.#forwarder || !ctx.mayForward) return { result: 'servfail', reply: this.#reply(query, Flag.RA | Rcode.SERVFAIL, []) };
    const result = await this.#forwarder.forward(message, { tcp: ctx.transport === 'tcp' });
    if (result === 'refused') return { result: 'refused', reply: this.#reply(query, Flag.RA | Rcode.REFUSED, []) };
    if (result === 'servfail') return { result: 'servfail', reply: this.#reply(query, Flag.RA | Rcode.SERVFAIL, []) };
    const upstreamFlags = result.readUInt16BE(2) & ~Flag.QR;
    const relayed = (upstreamFlags & Flag.RCODE) === Rcode.NXDOMAIN ? 'nxdomain' : 'forwarded';
    if (result.length <= limit) return { result: relayed, reply: result };
    // Only an upstream reply fetched over TCP can exceed the client's UDP size.
    return { result: relayed, reply: this.#reply(query, upstreamFlags | Flag.TC, []) };
  }

  /**
   * The length of the reply to a common query in message[start, end) for a
   * name with addresses in the table, which `#writeCommon` then writes; 0
   * to leave the query to the general path.
   */
  #prepareCommon(message: Buffer, start: number, end: number, sandboxId: string, transport: 'udp' | 'tcp'): number {
    const nameEnd = commonQueryNameEnd(message, start, end);
    if (nameEnd < 0) return 0;
    const answer = this.#tableAnswer(message, start, nameEnd, sandboxId);
    if (answer === undefined) return 0;
    // A common query's one additional record, if any, is its OPT, right after the question.
    const opt = nameEnd + 4;
    const hasOpt = message.readUInt16BE(start + 10) === 1;
    const length = opt - start + answer.length + (hasOpt ? REPLY_OPT.length : 0);
    const limit = transport === 'tcp' ? MAX_TCP_MESSAGE : udpLimit(hasOpt ? message.readUInt16BE(opt + OPT_UDP_SIZE) : undefined);
    if (length > limit) return 0;
    this.#preparedAnswer = answer;
    this.#preparedNameEnd = nameEnd;
    this.#preparedOpt = hasOpt ? ((message.readUInt16BE(opt + OPT_FLAGS) & OPT_FLAG_DO) !== 0 ? REPLY_OPT_DO : REPLY_OPT) : undefined;
    return length;
  }

  /**
   * Writes the reply `#prepareCommon` measured into `out` at `at`, byte for
   * byte what `buildReply` makes of the general path's parts. The records
   * are shuffled as the general path shuffles the table's addresses,
   * drawing as many numbers in the same order, so a seeded `random` gives
   * both paths the same order; nothing is drawn for a query not taken.
   */
  #writeCommon(message: Buffer, start: number, out: Buffer, at: number): void {
    const { records } = this.#preparedAnswer;
    const opt = this.#preparedOpt;
    const questionEnd = this.#preparedNameEnd + 4;
    out.writeUInt16BE(message.readUInt16BE(start), at);
    out.writeUInt16BE((message.readUInt16BE(start + 2) & ECHOED_FLAGS) | Flag.QR | Flag.RA | Rcode.NOERROR, at + 2);
    out.writeUInt16BE(1, at + 4);
    out.writeUInt16BE(records.length, at + 6);
    out.writeUInt16BE(0, at + 8);
    out.writeUInt16BE(opt !== undefined ? 1 : 0, at + 10);
    // Byte by byte: Buffer#copy of part of a buffer makes a view of that part, garbage on every query.
    let to = at + HEADER_LENGTH;
    for (let from = start + HEADER_LENGTH; from < questionEnd; from++) out[to++] = message[from]!;
    if (records.length > 1) {
      if (this.#order.length < records.length) this.#order = new Uint32Array(records.length);
      const order = this.#order;
      for (let i = 0; i < records.length; i++) order[i] = i;
      for (let i = records.length - 1; i > 0; i--) {
        const j = Math.floor(this.#random() * (i + 1));
        const kept = order[i]!;
        order[i] = order[j]!;
        order[j] = kept;
      }
      for (let i = 0; i < records.length; i++) {
        const record = records[order[i]!]!;
        out.set(record, to);
        to += record.length;
      }
    } else if (records.length === 1) {
      out.set(records[0]!, to);
      to += records[0]!.length;
    }
    if (opt !== undefined) out.set(opt, to);
  }

  /**
   * The encoded records answering the common query's question (name ending
   * at `nameEnd`) for the sandbox, in the table's order, or undefined when
   * the table has no addresses for it. Kept until the table changes, so a
   * name asked again costs a hash and a comparison of its bytes, with no
   * allocation, rather than a resolution and an encoding per address.
   * Only names with addresses are kept: what is kept is bounded by the
   * table, whatever names clients make up.
   */
  #tableAnswer(message: Buffer, start: number, nameEnd: number, sandboxId: string): CachedAnswer | undefined {
    if (this.#cachedGeneration !== this.#table.generation) {
      this.#answerCache.clear();
      this.#cachedGeneration = this.#table.generation;
    }
    // The name's wire bytes and the type; the name is ASCII, so folding its case folds every spelling of it into one key.
    const keyStart = start + HEADER_LENGTH;
    const keyEnd = nameEnd + 2;
    const hash = foldedHash(message, keyStart, keyEnd);
    let answers = this.#answerCache.get(sandboxId);
    const first = answers?.get(hash);
    for (let cached = first; cached !== undefined; cached = cached.next) {
      if (foldedEquals(cached.key, message, keyStart, keyEnd)) return cached;
    }

    const question = scanQuestion(message, keyStart);
    const name = question && questionName(question);
    if (name === undefined) return undefined;
    const type = message.readUInt16BE(nameEnd) === RecordType.A ? 'A' : 'AAAA';
    const { addresses } = this.#table.resolve(sandboxId, name, type);
    if (addresses.length === 0) return undefined;
    const encode = type === 'A' ? aRecord : aaaaRecord;
    const records = addresses.map((address) => encode(this.#ttl, address));
    const key = Buffer.from(message.subarray(keyStart, keyEnd));
    for (let i = 0; i < key.length; i++) if (key[i]! >= ASCII_A && key[i]! <= ASCII_Z) key[i] = key[i]! | ASCII_LOWERCASE;
    const answer: CachedAnswer = { key, records, length: records.reduce((sum, record) => sum + record.length, 0), next: first };
    if (!answers) {
      answers = new Map();
      this.#answerCache.set(sandboxId, answers);
    }
    answers.set(hash, answer);
    return answer;
  }

  /** Answer records from the table, [] for NODATA, or undefined when the name is not the table's. */
  #answerLocally(question: RawQuestion, sandboxId: string): Buffer[] | undefined {
    const name = questionName(question);
    if (question.class !== CLASS_IN || name === undefined) return undefined;
    if (question.type === RecordType.PTR) {
      const targets = this.#table.reverse(sandboxId, name);
      if (targets.length > 0) return this.#ptrRecords(targets);
    }
    if (question.type === RecordType.A || question.type === RecordType.AAAA) {
      const type = question.type === RecordType.A ? 'A' : 'AAAA';
      const { exists, addresses } = this.#table.resolve(sandboxId, name, type);
      if (!exists) return undefined;
      const encode = type === 'A' ? aRecord : aaaaRecord;
      return shuffle(addresses, this.#random).map((address) => encode(this.#ttl, address));
    }
    return this.#table.resolve(sandboxId, name, 'A').exists ? [] : undefined;
  }

  /** PTR records, skipping (and logging) targets that are not valid names, such as one with a label over 63 bytes. */
  #ptrRecords(targets: string[]): Buffer[] {
    return targets.flatMap((target) => {
      try {
        return [ptrRecord(this.#ttl, target)];
      } catch (error) {
        this.#logger.warn(`dns: cannot answer PTR with ${JSON.stringify(target)}: ${(error as Error).message}`);
        return [];
      }
    });
  }

  /** The reply, or when it exceeds `limit`, the truncated reply: TC with the question and OPT only (RFC 2181 §9). */
  #fit(query: Query, flags: number, answers: Buffer[], limit: number): Buffer {
    const reply = this.#reply(query, flags, answers);
    return reply.length <= limit ? reply : this.#reply(query, flags | Flag.TC, []);
  }

  #reply(query: Query, flags: number, answers: Buffer[], extendedRcode = 0): Buffer {
    const opt = query.opt
      ? optRecord({ udpSize: UDP_MAX_SIZE, extendedRcode, version: 0, dnssecOk: query.opt.dnssecOk })
      : undefined;
    return buildReply({
      id: query.id,
      flags: query.echoedFlags | flags,
      question: query.question,
      answers,
      ...(opt ? { opt } : {}),
    });
  }
}
