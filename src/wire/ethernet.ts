/**
 * Ethernet II header with an optional single 802.1Q tag (IEEE 802.3 §3.1.1,
 * IEEE 802.1Q §9.3). Accessors read one field without allocating; the repr is
 * for control paths and tests.
 */
import { readU16, requireBytes, requireRoom, writeU16 } from './bytes.js';
import { readMac, writeMac } from './mac.js';

export const ETHERNET_HEADER_LEN = 14;
export const ETHERNET_VLAN_HEADER_LEN = 18;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;
export const ETHERTYPE_VLAN = 0x8100;

const DST = 0;
const SRC = 6;
const TYPE = 12;
const TAG_CONTROL = 14;
const TAGGED_TYPE = 16;

export interface EthernetVlanTag {
  /** Priority code point, 0–7. */
  pcp: number;
  /** Drop eligible indicator. */
  dei: boolean;
  /** VLAN identifier, 0–4095. */
  vid: number;
}

export interface EthernetRepr {
  dst: number;
  src: number;
  vlan?: EthernetVlanTag;
  /** The EtherType of the payload (after the tag when there is one). */
  etherType: number;
}

/*
 * The accessors below assume the caller checked buf.length - offset >= ETHERNET_HEADER_LEN.
 * For a tagged frame the inner EtherType sits at bytes 16–17: compare
 * offset + ethernetPayloadOffset(buf, offset) with the frame's end before trusting it.
 */

export function ethernetDst(buf: Uint8Array, offset = 0): number {
  return readMac(buf, offset + DST);
}

export function ethernetSrc(buf: Uint8Array, offset = 0): number {
  return readMac(buf, offset + SRC);
}

/** The payload's EtherType, looking past one 802.1Q tag. */
export function ethernetType(buf: Uint8Array, offset = 0): number {
  const outer = readU16(buf, offset + TYPE);
  return outer === ETHERTYPE_VLAN ? readU16(buf, offset + TAGGED_TYPE) : outer;
}

/** The header length, relative to offset: 14, or 18 with an 802.1Q tag. */
export function ethernetPayloadOffset(buf: Uint8Array, offset = 0): number {
  return readU16(buf, offset + TYPE) === ETHERTYPE_VLAN ? ETHERNET_VLAN_HEADER_LEN : ETHERNET_HEADER_LEN;
}

/** Decodes the header; `payloadOffset` is relative to offset, like ethernetPayloadOffset. */
export function decodeEthernet(buf: Uint8Array, offset = 0): EthernetRepr & { payloadOffset: number } {
  requireBytes(buf, offset, ETHERNET_HEADER_LEN, 'Ethernet header (IEEE 802.3 §3.1.1)');
  const dst = readMac(buf, offset + DST);
  const src = readMac(buf, offset + SRC);
  const outer = readU16(buf, offset + TYPE);
  if (outer !== ETHERTYPE_VLAN) return { dst, src, etherType: outer, payloadOffset: ETHERNET_HEADER_LEN };
  requireBytes(buf, offset, ETHERNET_VLAN_HEADER_LEN, '802.1Q tagged Ethernet header (IEEE 802.1Q §9.3)');
  const control = readU16(buf, offset + TAG_CONTROL);
  return {
    dst,
    src,
    vlan: { pcp: control >>> 13, dei: (control & 0x1000) !== 0, vid: control & 0x0fff },
    etherType: readU16(buf, offset + TAGGED_TYPE),
    payloadOffset: ETHERNET_VLAN_HEADER_LEN,
  };
}

export function ethernetHeaderLength(repr: EthernetRepr): number {
  return repr.vlan === undefined ? ETHERNET_HEADER_LEN : ETHERNET_VLAN_HEADER_LEN;
}

/** Writes the header at offset and returns the bytes written (14 or 18). */
export function encodeEthernet(repr: EthernetRepr, buf: Uint8Array, offset = 0): number {
  const length = ethernetHeaderLength(repr);
  requireRoom(buf, offset, length, 'Ethernet header');
  writeMac(repr.dst, buf, offset + DST);
  writeMac(repr.src, buf, offset + SRC);
  const { vlan } = repr;
  if (vlan === undefined) {
    writeU16(repr.etherType, buf, offset + TYPE);
    return length;
  }
  if (!(vlan.pcp >= 0 && vlan.pcp <= 7 && vlan.vid >= 0 && vlan.vid <= 0xfff)) {
    throw new RangeError(`802.1Q tag out of range: pcp ${vlan.pcp} (0–7), vid ${vlan.vid} (0–4095)`);
  }
  writeU16(ETHERTYPE_VLAN, buf, offset + TYPE);
  writeU16((vlan.pcp << 13) | (vlan.dei ? 0x1000 : 0) | vlan.vid, buf, offset + TAG_CONTROL);
  writeU16(repr.etherType, buf, offset + TAGGED_TYPE);
  return length;
}
