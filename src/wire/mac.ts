/**
 * MAC addresses as 48-bit integers: exact in a double, usable as Map keys and
 * compared with ===, so the data plane never builds strings per packet.
 */
import { WireError } from './error.js';

export const BROADCAST_MAC = 0xffffffffffff;

const TWO_24 = 0x1000000;
const TWO_40 = 0x10000000000;
const MAC_TEXT = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i;

/** Reads the MAC at offset; the caller has checked that 6 bytes are there. */
export function readMac(buf: Uint8Array, offset: number): number {
  const high = (buf[offset]! << 16) | (buf[offset + 1]! << 8) | buf[offset + 2]!;
  const low = (buf[offset + 3]! << 16) | (buf[offset + 4]! << 8) | buf[offset + 5]!;
  return high * TWO_24 + low;
}

/** Writes the MAC at offset; the caller has checked that 6 bytes fit. */
export function writeMac(mac: number, buf: Uint8Array, offset: number): void {
  const high = Math.floor(mac / TWO_24);
  const low = mac - high * TWO_24;
  buf[offset] = high >>> 16;
  buf[offset + 1] = high >>> 8;
  buf[offset + 2] = high;
  buf[offset + 3] = low >>> 16;
  buf[offset + 4] = low >>> 8;
  buf[offset + 5] = low;
}

/** Parses `02:42:ac:11:00:02` in any case; anything else is a WireError. */
export function parseMac(text: string): number {
  if (!MAC_TEXT.test(text)) {
    throw new WireError(0, `invalid MAC address ${JSON.stringify(text)}: need six colon-separated hex octets`);
  }
  return Number.parseInt(text.replaceAll(':', ''), 16);
}

/** Lowercase colon form, e.g. `02:42:ac:11:00:02`. */
export function formatMac(mac: number): string {
  return mac.toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:');
}

/** The I/G bit, the least significant bit of the first octet (IEEE 802 §8.2); broadcast included. */
export function isMulticastMac(mac: number): boolean {
  return (Math.floor(mac / TWO_40) & 1) === 1;
}
