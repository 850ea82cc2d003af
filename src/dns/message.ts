/**
 * The few pieces of DNS message layout (RFC 1035 §4.1) the server and the
 * forwarder read and write themselves: the header, the question as raw
 * bytes, and the records the server answers with. Answers name their owner
 * with a pointer to the question (RFC 1035 §4.1.4), so they repeat the name
 * exactly as asked and cost two bytes each. Whole-message decoding is left
 * to dns-packet, except for the one query shape nearly every stub resolver
 * sends (`commonQueryNameEnd`), which is read here so the server can answer it
 * without decoding the whole message.
 */
import { parseIPv4, parseIPv6 } from '../wire/index.js';

export const HEADER_LENGTH = 12;

export const Flag = {
  QR: 0x8000,
  OPCODE: 0x7800,
  AA: 0x0400,
  TC: 0x0200,
  RD: 0x0100,
  RA: 0x0080,
  CD: 0x0010,
  RCODE: 0x000f,
} as const;

export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  /** Extended (RFC 6891 §9): 16, carried as 1 in the OPT record's upper rcode bits. */
  BADVERS: 16,
} as const;

export const RecordType = { A: 1, PTR: 12, AAAA: 28, OPT: 41 } as const;
export const CLASS_IN = 1;

/** Without EDNS a UDP message is at most 512 bytes (RFC 1035 §4.2.1). */
export const UDP_DEFAULT_SIZE = 512;
/** The largest UDP size this server honours and advertises. */
export const UDP_MAX_SIZE = 4096;

const MAX_NAME_LENGTH = 255;
const MAX_LABEL_LENGTH = 63;
const POINTER_TO_QUESTION = 0xc000 | HEADER_LENGTH;
const OPT_LENGTH = 11;

export interface RawQuestion {
  /** The question section's bytes (name, type, class), copied into replies. */
  readonly bytes: Buffer;
  readonly labels: Buffer[];
  readonly type: number;
  readonly class: number;
}

/**
 * The question at `offset`, or undefined when it is not one whole
 * uncompressed name plus type and class. A query's question is the first
 * name of the message, so it has no prior name to point to (RFC 1035
 * §4.1.4); a pointer there is refused rather than followed.
 */
export function scanQuestion(message: Buffer, offset = HEADER_LENGTH): RawQuestion | undefined {
  const labels: Buffer[] = [];
  let at = offset;
  for (;;) {
    const length = message[at];
    if (length === undefined || (length & 0xc0) !== 0) return undefined;
    at += 1;
    if (length === 0) break;
    if (at + length > message.length) return undefined;
    labels.push(message.subarray(at, at + length));
    at += length;
    if (at - offset > MAX_NAME_LENGTH) return undefined;
  }
  if (at + 4 > message.length) return undefined;
  return {
    bytes: message.subarray(offset, at + 4),
    labels,
    type: message.readUInt16BE(at),
    class: message.readUInt16BE(at + 2),
  };
}

/**
 * Where the question's name ends (past its root label, where its type
 * begins) when message[start, end) is the query nearly every stub resolver
 * sends, else -1: QR 0 and opcode 0; one question and nothing else but at
 * most one OPT record; the question an A or AAAA of class IN whose name is
 * uncompressed ASCII of at most 255 bytes (RFC 1035 §3.1, which dns-packet
 * also holds to); the OPT owned by the root, EDNS version 0, without
 * options (RFC 6891 §6.1.2); no bytes after it. Everything else is the
 * general path's to read. The OPT's extended rcode and flags other than DO
 * are not looked at, as the general path does not look at them. The
 * message may sit inside a larger buffer (a socket's receive memory), so
 * nothing is read outside [start, end) and nothing is allocated.
 */
export function commonQueryNameEnd(message: Buffer, start = 0, end = message.length): number {
  if (end - start < HEADER_LENGTH) return -1;
  if ((message.readUInt16BE(start + 2) & (Flag.QR | Flag.OPCODE)) !== 0) return -1;
  if (message.readUInt16BE(start + 4) !== 1 || message.readUInt16BE(start + 6) !== 0 || message.readUInt16BE(start + 8) !== 0) return -1;
  const additionals = message.readUInt16BE(start + 10);
  if (additionals > 1) return -1;
  const nameStart = start + HEADER_LENGTH;
  let at = nameStart;
  for (;;) {
    if (at >= end) return -1;
    // A length over 63 is a pointer or a reserved label type.
    const length = message[at]!;
    if (length > MAX_LABEL_LENGTH) return -1;
    at += 1;
    if (length === 0) break;
    const labelEnd = at + length;
    // The root label still to come must fit in the 255 bytes too.
    if (labelEnd - nameStart + 1 > MAX_NAME_LENGTH || labelEnd > end) return -1;
    // The server keys answers by the name's bytes with their case folded, which folds the name's case only in ASCII.
    for (; at < labelEnd; at++) if (message[at]! >= 0x80) return -1;
  }
  const nameEnd = at;
  if (end !== nameEnd + 4 + (additionals === 1 ? OPT_LENGTH : 0)) return -1;
  const type = message.readUInt16BE(nameEnd);
  if ((type !== RecordType.A && type !== RecordType.AAAA) || message.readUInt16BE(nameEnd + 2) !== CLASS_IN) return -1;
  if (additionals === 0) return nameEnd;
  const opt = nameEnd + 4;
  if (message[opt] !== 0 || message.readUInt16BE(opt + 1) !== RecordType.OPT || message[opt + 6] !== 0 || message.readUInt16BE(opt + 9) !== 0) {
    return -1;
  }
  return nameEnd;
}

/** Offsets in the OPT record of a common query (after its question) of what the server reads from it. */
export const OPT_UDP_SIZE = 3;
export const OPT_FLAGS = 7;
/** The DO bit of the OPT record's flags (RFC 3225). */
export const OPT_FLAG_DO = 0x8000;

/**
 * The question's name as text for table lookups, or undefined when a label
 * holds a dot and so cannot be told apart from two labels.
 */
export function questionName(question: RawQuestion): string | undefined {
  const labels = question.labels.map((label) => label.toString('utf8'));
  return labels.some((label) => label.includes('.')) ? undefined : labels.join('.');
}

/** Name bytes folded to lowercase plus exact type and class: equal for the same question (RFC 4343). */
export function questionKey(question: RawQuestion): string {
  const nameLength = question.bytes.length - 4;
  return `${question.bytes.toString('latin1', 0, nameLength).toLowerCase()}/${question.type}/${question.class}`;
}

/** An uncompressed wire name; throws RangeError when a label is empty or over 63 bytes, or the name over 255. */
export function encodeName(name: string): Buffer {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  const parts = trimmed === '' ? [] : trimmed.split('.').map((label) => Buffer.from(label, 'utf8'));
  const out = Buffer.alloc(parts.reduce((sum, label) => sum + 1 + label.length, 1));
  let at = 0;
  for (const label of parts) {
    if (label.length === 0 || label.length > 63) throw new RangeError(`bad DNS label in ${JSON.stringify(name)}`);
    out[at++] = label.length;
    label.copy(out, at);
    at += label.length;
  }
  if (out.length > MAX_NAME_LENGTH) throw new RangeError(`DNS name ${JSON.stringify(name)} is too long`);
  return out;
}

function record(type: number, ttl: number, rdata: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + rdata.length);
  out.writeUInt16BE(POINTER_TO_QUESTION, 0);
  out.writeUInt16BE(type, 2);
  out.writeUInt16BE(CLASS_IN, 4);
  out.writeUInt32BE(ttl, 6);
  out.writeUInt16BE(rdata.length, 10);
  out.set(rdata, 12);
  return out;
}

/** An A record for the question's name; `address` is dotted-quad text. */
export function aRecord(ttl: number, address: string): Buffer {
  const rdata = Buffer.alloc(4);
  rdata.writeUInt32BE(parseIPv4(address), 0);
  return record(RecordType.A, ttl, rdata);
}

/** An AAAA record for the question's name. */
export function aaaaRecord(ttl: number, address: string): Buffer {
  return record(RecordType.AAAA, ttl, parseIPv6(address));
}

/** A PTR record for the question's name; throws RangeError when `target` is not a valid name. */
export function ptrRecord(ttl: number, target: string): Buffer {
  return record(RecordType.PTR, ttl, encodeName(target));
}

export interface OptFields {
  udpSize: number;
  /** The upper 8 bits of a 12-bit rcode. */
  extendedRcode: number;
  version: number;
  dnssecOk: boolean;
}

/** The OPT pseudo-record (RFC 6891 §6.1.2), without options. */
export function optRecord(opt: OptFields): Buffer {
  const out = Buffer.alloc(11);
  out[0] = 0;
  out.writeUInt16BE(RecordType.OPT, 1);
  out.writeUInt16BE(opt.udpSize, OPT_UDP_SIZE);
  out[5] = opt.extendedRcode;
  out[6] = opt.version;
  out.writeUInt16BE(opt.dnssecOk ? OPT_FLAG_DO : 0, OPT_FLAGS);
  out.writeUInt16BE(0, 9);
  return out;
}

export interface ReplyParts {
  id: number;
  /** Header flags without QR, which is always set. */
  flags: number;
  question?: Pick<RawQuestion, 'bytes'>;
  answers: readonly Buffer[];
  opt?: Buffer;
}

/** A response message from its parts, written into one buffer. */
export function buildReply(parts: ReplyParts): Buffer {
  const question = parts.question?.bytes;
  let length = HEADER_LENGTH + (question?.length ?? 0) + (parts.opt?.length ?? 0);
  for (const answer of parts.answers) length += answer.length;
  const out = Buffer.allocUnsafe(length);
  out.writeUInt16BE(parts.id, 0);
  out.writeUInt16BE((parts.flags | Flag.QR) & 0xffff, 2);
  out.writeUInt16BE(question ? 1 : 0, 4);
  out.writeUInt16BE(parts.answers.length, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(parts.opt ? 1 : 0, 10);
  let at = HEADER_LENGTH;
  if (question) {
    out.set(question, at);
    at += question.length;
  }
  for (const answer of parts.answers) {
    out.set(answer, at);
    at += answer.length;
  }
  if (parts.opt) out.set(parts.opt, at);
  return out;
}
