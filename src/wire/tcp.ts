/** TCP header (RFC 9293 §3.1). Offsets are relative to the start of the header. */
import { readU16, readU32, requireBytes, requireRoom, writeU16, writeU32 } from './bytes.js';
import { checksumSkippingField, pseudoHeaderSumIPv4 } from './checksum.js';
import { WireError } from './error.js';
import { IPPROTO_TCP } from './ipv4.js';

export const TCP_MIN_HEADER_LEN = 20;
export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;
export const URG = 0x20;
export const ECE = 0x40;
export const CWR = 0x80;

const SRC_PORT = 0;
const DST_PORT = 2;
const SEQ = 4;
const ACK_NUMBER = 8;
const DATA_OFFSET = 12;
const FLAGS = 13;
const WINDOW = 14;
/** Where the checksum field sits in the TCP header. */
export const TCP_CHECKSUM_OFFSET = 16;
const CHECKSUM = TCP_CHECKSUM_OFFSET;
const URGENT_POINTER = 18;

export interface TcpRepr {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** Header length in 32-bit words, as in the field: 5 plus the options' words. */
  dataOffset: number;
  /** Bitmask of FIN, SYN, RST, PSH, ACK, URG, ECE, CWR. */
  flags: number;
  window: number;
  checksum: number;
  urgentPointer: number;
  /** The option bytes, a view into the decoded buffer. */
  options: Uint8Array;
}

/* Accessors: the caller has checked that the header is there. */

export function tcpSrcPort(buf: Uint8Array, offset: number): number {
  return readU16(buf, offset + SRC_PORT);
}

export function tcpDstPort(buf: Uint8Array, offset: number): number {
  return readU16(buf, offset + DST_PORT);
}

export function tcpSeq(buf: Uint8Array, offset: number): number {
  return readU32(buf, offset + SEQ);
}

export function tcpAck(buf: Uint8Array, offset: number): number {
  return readU32(buf, offset + ACK_NUMBER);
}

/** In 32-bit words, as in the field. */
export function tcpDataOffset(buf: Uint8Array, offset: number): number {
  return buf[offset + DATA_OFFSET]! >>> 4;
}

/** In bytes: tcpDataOffset × 4. */
export function tcpHeaderLength(buf: Uint8Array, offset: number): number {
  return (buf[offset + DATA_OFFSET]! >>> 4) * 4;
}

export function tcpFlags(buf: Uint8Array, offset: number): number {
  return buf[offset + FLAGS]!;
}

/**
 * Decodes the header of the segment of `length` bytes at offset (the rest of
 * the buffer unless given); the checksum is returned, not verified.
 */
export function decodeTcp(buf: Uint8Array, offset = 0, length = buf.length - offset): TcpRepr {
  requireBytes(buf, offset, length, 'TCP segment (RFC 9293 §3.1)');
  if (length < TCP_MIN_HEADER_LEN) {
    throw new WireError(offset, `truncated TCP header (RFC 9293 §3.1): ${length} bytes at offset ${offset}, need 20`);
  }
  const dataOffset = tcpDataOffset(buf, offset);
  if (dataOffset < 5) {
    throw new WireError(offset + DATA_OFFSET, `TCP data offset ${dataOffset} below the minimum of 5 (RFC 9293 §3.1)`);
  }
  if (dataOffset * 4 > length) {
    throw new WireError(
      offset + DATA_OFFSET,
      `TCP data offset ${dataOffset} (${dataOffset * 4} bytes) beyond the ${length}-byte segment at offset ${offset} (RFC 9293 §3.1)`,
    );
  }
  return {
    srcPort: tcpSrcPort(buf, offset),
    dstPort: tcpDstPort(buf, offset),
    seq: tcpSeq(buf, offset),
    ack: tcpAck(buf, offset),
    dataOffset,
    flags: tcpFlags(buf, offset),
    window: readU16(buf, offset + WINDOW),
    checksum: readU16(buf, offset + CHECKSUM),
    urgentPointer: readU16(buf, offset + URGENT_POINTER),
    options: buf.subarray(offset + TCP_MIN_HEADER_LEN, offset + dataOffset * 4),
  };
}

/** Bytes encodeTcp writes: 20 plus the options. */
export function tcpHeaderLengthOf(repr: TcpRepr): number {
  return TCP_MIN_HEADER_LEN + repr.options.length;
}

/**
 * Writes the header with `repr.checksum` as given; returns the bytes written.
 * The options must fill whole words and agree with dataOffset.
 */
export function encodeTcp(repr: TcpRepr, buf: Uint8Array, offset = 0): number {
  const length = tcpHeaderLengthOf(repr);
  if (repr.options.length % 4 !== 0 || repr.dataOffset * 4 !== length || length > 60) {
    throw new RangeError(
      `TCP data offset ${repr.dataOffset} does not fit ${repr.options.length} option bytes (whole words, at most 40)`,
    );
  }
  requireRoom(buf, offset, length, 'TCP header');
  writeU16(repr.srcPort, buf, offset + SRC_PORT);
  writeU16(repr.dstPort, buf, offset + DST_PORT);
  writeU32(repr.seq, buf, offset + SEQ);
  writeU32(repr.ack, buf, offset + ACK_NUMBER);
  buf[offset + DATA_OFFSET] = repr.dataOffset << 4;
  buf[offset + FLAGS] = repr.flags;
  writeU16(repr.window, buf, offset + WINDOW);
  writeU16(repr.checksum, buf, offset + CHECKSUM);
  writeU16(repr.urgentPointer, buf, offset + URGENT_POINTER);
  buf.set(repr.options, offset + TCP_MIN_HEADER_LEN);
  return length;
}

/**
 * The checksum the segment of `length` bytes (header and data) at offset
 * should carry over IPv4, ignoring its current checksum field.
 */
export function tcpChecksumIPv4(buf: Uint8Array, offset: number, length: number, src: number, dst: number): number {
  return checksumSkippingField(buf, offset, length, CHECKSUM, pseudoHeaderSumIPv4(src, dst, IPPROTO_TCP, length));
}
