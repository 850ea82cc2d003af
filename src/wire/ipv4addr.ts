/** IPv4 addresses as unsigned 32-bit numbers. */
import { readU32, writeU32 } from './bytes.js';
import { WireError } from './error.js';

// No leading zeros: inet_pton refuses them, and inet_aton would read them as octal.
const OCTET = /^(?:0|[1-9][0-9]{0,2})$/;

/** Parses dotted-quad text such as `198.18.0.1`; anything else is a WireError. */
export function parseIPv4(text: string): number {
  const parts = text.split('.');
  if (parts.length === 4 && parts.every((part) => OCTET.test(part) && Number(part) <= 255)) {
    return parts.reduce((value, part) => value * 256 + Number(part), 0);
  }
  throw new WireError(0, `invalid IPv4 address ${JSON.stringify(text)}: need dotted decimal a.b.c.d`);
}

export function formatIPv4(address: number): string {
  return `${address >>> 24}.${(address >>> 16) & 0xff}.${(address >>> 8) & 0xff}.${address & 0xff}`;
}

/** Reads the address at offset; the caller has checked that 4 bytes are there. */
export function readIPv4(buf: Uint8Array, offset: number): number {
  return readU32(buf, offset);
}

/** Writes the address at offset; the caller has checked that 4 bytes fit. */
export function writeIPv4(address: number, buf: Uint8Array, offset: number): void {
  writeU32(address, buf, offset);
}
