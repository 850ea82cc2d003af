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
 * plain OPT record (see `readCommonQuery`), for a name with addresses in the
 * table, is answered on a fast path: read by hand rather than decoded whole
 * with dns-packet, its answer records encoded once per table generation, the
 * reply built in the same turn. It gives the bytes and the observation the
 * general path would give; whatever it does not take (NODATA, names not in
 * the table, replies that need truncating) goes the general way.
 */
import { decode } from 'dns-packet';
import type { Forwarder } from './forwarder.js';
import {
  CLASS_IN,
  type CommonQuery,
  Flag,
  HEADER_LENGTH,
  Rcode,
  RecordType,
  UDP_DEFAULT_SIZE,
  UDP_MAX_SIZE,
  aRecord,
  aaaaRecord,
  buildReply,
  optRecord,
  ptrRecord,
  questionName,
  readCommonQuery,
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
  readonly records: readonly Buffer[];
  readonly length: number;
}

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
function udpLimit(opt: Pick<ClientOpt, 'udpSize'> | undefined): number {
  return opt ? Math.min(Math.max(opt.udpSize, UDP_DEFAULT_SIZE), UDP_MAX_SIZE) : UDP_DEFAULT_SIZE;
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
  /** Sandbox → lowercase question name and type (as wire bytes) → answer, for table generation `#cachedGeneration`. */
  readonly #answerCache = new Map<string, Map<string, CachedAnswer>>();
  #cachedGeneration = -1;
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
    const reply = this.#answerCommon(query, ctx);
    if (reply !== undefined) this.#onQuery?.({ result: 'answered', transport: ctx.transport, seconds: (performance.now() - start) / 1000 });
    return reply;
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
    const limit = ctx.transport === 'tcp' ? MAX_TCP_MESSAGE : udpLimit(query.opt);

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
   * The reply to a common query for a name with addresses in the table,
   * byte for byte the general path's, or undefined to leave the query to the
   * general path. Nothing is drawn for the shuffle before the reply is sure,
   * so a seeded `random` gives both paths the same order.
   */
  #answerCommon(message: Buffer, ctx: QueryContext): Buffer | undefined {
    const query = readCommonQuery(message);
    if (!query) return undefined;
    const answer = this.#tableAnswer(message, query, ctx.sandboxId);
    if (!answer) return undefined;
    const questionEnd = query.nameEnd + 4;
    const length = questionEnd + answer.length + (query.opt ? REPLY_OPT.length : 0);
    if (length > (ctx.transport === 'tcp' ? MAX_TCP_MESSAGE : udpLimit(query.opt))) return undefined;
    return buildReply({
      id: message.readUInt16BE(0),
      flags: (message.readUInt16BE(2) & ECHOED_FLAGS) | Flag.RA | Rcode.NOERROR,
      question: { bytes: message.subarray(HEADER_LENGTH, questionEnd) },
      // A copy: the kept order is the table's, which the general path shuffles from each time.
      answers: answer.records.length > 1 ? shuffle([...answer.records], this.#random) : answer.records,
      ...(query.opt ? { opt: query.opt.dnssecOk ? REPLY_OPT_DO : REPLY_OPT } : {}),
    });
  }

  /**
   * The encoded records answering the query's question for the sandbox, in
   * the table's order, or undefined when the table has no addresses for it.
   * Kept until the table changes, so a name asked again costs a map lookup
   * rather than a resolution and an encoding per address. Only names with
   * addresses are kept: what is kept is bounded by the table, whatever
   * names clients make up.
   */
  #tableAnswer(message: Buffer, query: CommonQuery, sandboxId: string): CachedAnswer | undefined {
    if (this.#cachedGeneration !== this.#table.generation) {
      this.#answerCache.clear();
      this.#cachedGeneration = this.#table.generation;
    }
    // The name's wire bytes and the type; the name is ASCII, so lowercasing folds every spelling of it into one key.
    const key = message.toString('latin1', HEADER_LENGTH, query.nameEnd + 2).toLowerCase();
    let answers = this.#answerCache.get(sandboxId);
    const cached = answers?.get(key);
    if (cached) return cached;

    const question = scanQuestion(message);
    const name = question && questionName(question);
    if (name === undefined) return undefined;
    const type = query.type === RecordType.A ? 'A' : 'AAAA';
    const { addresses } = this.#table.resolve(sandboxId, name, type);
    if (addresses.length === 0) return undefined;
    const encode = type === 'A' ? aRecord : aaaaRecord;
    const records = addresses.map((address) => encode(this.#ttl, address));
    const answer: CachedAnswer = { records, length: records.reduce((sum, record) => sum + record.length, 0) };
    if (!answers) {
      answers = new Map();
      this.#answerCache.set(sandboxId, answers);
    }
    answers.set(key, answer);
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
