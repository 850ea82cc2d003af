/**
 * netctl's VTEP liveness probe: a BFD-style echo (in the spirit of RFC 5880)
 * between netctl VTEPs, carried in UDP on the data-path port so it takes the
 * path VXLAN takes. Offsets are relative to the start of the UDP payload.
 *
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +---------------+---------------+---------------+---------------+
 * |                  Marker (0x00 0x00 0x00 0xFB)                 |  0
 * +---------------+---------------+-------------------------------+
 * |    Version    |     Type      |         Underlay MTU          |  4
 * +---------------+---------------+-------------------------------+
 * |                        Sequence Number                        |  8
 * +---------------------------------------------------------------+
 * |                           Reserved                            | 12
 * +---------------------------------------------------------------+
 * |                  Timestamp (µs, 64 bits) ...                  | 16
 * |                                                               | 20
 * +---------------------------------------------------------------+
 *
 * §1 Length: 24 octets; later versions may append fields, and a receiver
 *    ignores octets beyond the 24 it knows. 24 is no accident: a datagram of
 *    at least a VXLAN header plus an Ethernet header (22) passes the VTEP's
 *    length check and reaches its flags check, where probes are recognised.
 * §2 Marker: its first octet has the VXLAN I flag (0x08) clear, so every
 *    RFC 7348 receiver drops a probe (§5 there), and as a 32-bit value it is
 *    an ESP SPI reserved by IANA (1–255, RFC 4303 §2.1) and not RFC 3948's
 *    non-ESP marker (0): ESP-in-UDP on the same port can never look like one.
 * §3 Version: 1. Type: 1 request, 2 reply.
 * §4 Underlay MTU: the sender's underlay MTU, 0 when not stated.
 * §5 Sequence Number: the sender's count of requests to that peer; a reply
 *    echoes the request's. Reserved: zero when sent, ignored when received.
 * §6 Timestamp: the requester's clock in microseconds (any origin), below
 *    2^53; a reply echoes it, so the requester reads the RTT off its own clock.
 */
import { readU16, readU32, requireBytes, requireRoom, writeU16, writeU32 } from './bytes.js';
import { WireError } from './error.js';

export const PROBE_LEN = 24;
export const PROBE_MARKER = 0x000000fb;
export const PROBE_VERSION = 1;
export const PROBE_REQUEST = 1;
export const PROBE_REPLY = 2;

const MARKER = 0;
const VERSION = 4;
const TYPE = 5;
const UNDERLAY_MTU = 6;
const SEQUENCE = 8;
const RESERVED = 12;
const TIMESTAMP = 16;
const TWO_32 = 0x1_0000_0000;
/** The high 32 bits of a timestamp below 2^53 fit in 21 bits. */
const MAX_TIMESTAMP_HIGH = 0x1f_ffff;

export type ProbeType = typeof PROBE_REQUEST | typeof PROBE_REPLY;

export interface ProbeRepr {
  type: ProbeType;
  sequence: number;
  /** Microseconds on the requester's clock, a safe integer. */
  timestamp: number;
  /** The sender's underlay MTU; 0 when not stated. */
  underlayMtu: number;
}

/**
 * The receive path's check of `length` bytes at offset: true for a
 * well-formed probe (§1–§3, §6), after which the accessors cannot fail.
 * Never throws or allocates.
 */
export function probeCheck(buf: Uint8Array, offset: number, length: number): boolean {
  if (offset < 0 || length < PROBE_LEN || offset + length > buf.length) return false;
  if (readU32(buf, offset + MARKER) !== PROBE_MARKER || buf[offset + VERSION] !== PROBE_VERSION) return false;
  const type = buf[offset + TYPE];
  return (type === PROBE_REQUEST || type === PROBE_REPLY) && readU32(buf, offset + TIMESTAMP) <= MAX_TIMESTAMP_HIGH;
}

/* Accessors: the caller has checked the probe (probeCheck or decodeProbe). */

export function probeType(buf: Uint8Array, offset = 0): ProbeType {
  return buf[offset + TYPE] as ProbeType;
}

export function probeSequence(buf: Uint8Array, offset = 0): number {
  return readU32(buf, offset + SEQUENCE);
}

export function probeTimestamp(buf: Uint8Array, offset = 0): number {
  return readU32(buf, offset + TIMESTAMP) * TWO_32 + readU32(buf, offset + TIMESTAMP + 4);
}

export function probeUnderlayMtu(buf: Uint8Array, offset = 0): number {
  return readU16(buf, offset + UNDERLAY_MTU);
}

/** Decodes and validates the probe at offset; octets past the 24 it knows are ignored (§1). */
export function decodeProbe(buf: Uint8Array, offset = 0): ProbeRepr {
  requireBytes(buf, offset, PROBE_LEN, 'netctl probe (§1)');
  const marker = readU32(buf, offset + MARKER);
  if (marker !== PROBE_MARKER) {
    throw new WireError(
      offset + MARKER,
      `marker 0x${marker.toString(16).padStart(8, '0')} is not a netctl probe's 0x${PROBE_MARKER.toString(16).padStart(8, '0')} (netctl probe §2)`,
    );
  }
  const version = buf[offset + VERSION]!;
  if (version !== PROBE_VERSION) throw new WireError(offset + VERSION, `probe version ${version}, need ${PROBE_VERSION} (netctl probe §3)`);
  const type = buf[offset + TYPE]!;
  if (type !== PROBE_REQUEST && type !== PROBE_REPLY) {
    throw new WireError(offset + TYPE, `probe type ${type} is neither request (1) nor reply (2) (netctl probe §3)`);
  }
  if (readU32(buf, offset + TIMESTAMP) > MAX_TIMESTAMP_HIGH) {
    throw new WireError(offset + TIMESTAMP, 'probe timestamp not below 2^53 µs (netctl probe §6)');
  }
  return {
    type,
    sequence: probeSequence(buf, offset),
    timestamp: probeTimestamp(buf, offset),
    underlayMtu: probeUnderlayMtu(buf, offset),
  };
}

/** Writes the 24-octet probe at offset and returns its length; Reserved is written as zero (§5). */
export function encodeProbe(repr: ProbeRepr, buf: Uint8Array, offset = 0): number {
  if (!Number.isSafeInteger(repr.timestamp) || repr.timestamp < 0) throw new RangeError(`probe timestamp ${repr.timestamp} is not an integer from 0 to 2^53 − 1`);
  if (!(Number.isInteger(repr.sequence) && repr.sequence >= 0 && repr.sequence < TWO_32)) throw new RangeError(`probe sequence ${repr.sequence} outside 0–2^32 − 1`);
  if (!(Number.isInteger(repr.underlayMtu) && repr.underlayMtu >= 0 && repr.underlayMtu <= 0xffff)) {
    throw new RangeError(`probe underlay MTU ${repr.underlayMtu} outside 0–65535`);
  }
  requireRoom(buf, offset, PROBE_LEN, 'netctl probe');
  writeU32(PROBE_MARKER, buf, offset + MARKER);
  buf[offset + VERSION] = PROBE_VERSION;
  buf[offset + TYPE] = repr.type;
  writeU16(repr.underlayMtu, buf, offset + UNDERLAY_MTU);
  writeU32(repr.sequence, buf, offset + SEQUENCE);
  writeU32(0, buf, offset + RESERVED);
  writeU32(Math.floor(repr.timestamp / TWO_32), buf, offset + TIMESTAMP);
  writeU32(repr.timestamp % TWO_32, buf, offset + TIMESTAMP + 4);
  return PROBE_LEN;
}

/** Octets `encodeProbe` writes (dns-packet's encodingLength). */
export function probeLength(): number {
  return PROBE_LEN;
}
