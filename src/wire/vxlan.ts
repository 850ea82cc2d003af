/** VXLAN header (RFC 7348 §5): flags, 24 reserved bits, a 24-bit VNI, 8 reserved bits. */
import { requireBytes, requireRoom } from './bytes.js';
import { WireError } from './error.js';
import { ETHERNET_HEADER_LEN } from './ethernet.js';

export const VXLAN_HEADER_LEN = 8;
export const VXLAN_FLAG_I = 0x08;
export const DEFAULT_VXLAN_PORT = 4789;
export const MAX_VNI = 0xffffff;

const VNI = 4;
/**
 * Remote checksum offload (Linux vxlan `remcsumtx`/`remcsumrx`; the VXLAN
 * RCO draft of the IETF nvo3 group): this flag in the header's second octet
 * says the inner transport checksum holds only its pseudo-header sum, and the
 * last octet says where the checksum starts, in 2-octet units from the inner
 * Ethernet header (low 7 bits), bit 7 marking UDP rather than TCP.
 */
export const VXLAN_FLAG_RCO = 0x20;
const RCO_FLAG_OCTET = 1;
const RCO_OCTET = 7;
export const VXLAN_RCO_UDP = 0x80;
export const VXLAN_RCO_START_MASK = 0x7f;

/**
 * The RCO octet (start / 2, and VXLAN_RCO_UDP) when the header has the RCO
 * flag, else -1. The caller has checked the header.
 */
export function vxlanRemoteChecksum(buf: Uint8Array, offset = 0): number {
  return (buf[offset + RCO_FLAG_OCTET]! & VXLAN_FLAG_RCO) === 0 ? -1 : buf[offset + RCO_OCTET]!;
}

/** Writes the header with only the I flag set and the reserved fields zero. */
export function writeVxlanHeader(vni: number, buf: Uint8Array, offset = 0): void {
  if (!(vni >= 0 && vni <= MAX_VNI)) throw new RangeError(`VNI ${vni} outside 0–${MAX_VNI}`);
  requireRoom(buf, offset, VXLAN_HEADER_LEN, 'VXLAN header');
  buf[offset] = VXLAN_FLAG_I;
  buf[offset + 1] = 0;
  buf[offset + 2] = 0;
  buf[offset + 3] = 0;
  buf[offset + VNI] = vni >>> 16;
  buf[offset + VNI + 1] = vni >>> 8;
  buf[offset + VNI + 2] = vni;
  buf[offset + 7] = 0;
}

/** The VNI field; the caller has checked the header (vxlanCheck or decodeVxlan). */
export function readVxlanVni(buf: Uint8Array, offset = 0): number {
  return (buf[offset + VNI]! << 16) | (buf[offset + VNI + 1]! << 8) | buf[offset + VNI + 2]!;
}

/**
 * The receive path's check of the VXLAN packet (header plus inner frame) of
 * `length` bytes at offset: the VNI, or -1 when it is truncated, lacks the I
 * flag or carries less than an Ethernet header. Never throws or allocates.
 */
export function vxlanCheck(buf: Uint8Array, offset: number, length: number): number {
  if (offset < 0 || length < VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN || offset + length > buf.length) return -1;
  if ((buf[offset]! & VXLAN_FLAG_I) === 0) return -1;
  return readVxlanVni(buf, offset);
}

/**
 * Decodes the header. `flags` is the whole flags octet, reserved bits included:
 * receivers ignore them (RFC 7348 §5). `payloadOffset` is relative to offset
 * (always 8), like ethernetPayloadOffset.
 */
export function decodeVxlan(buf: Uint8Array, offset = 0): { vni: number; flags: number; payloadOffset: number } {
  requireBytes(buf, offset, VXLAN_HEADER_LEN, 'VXLAN header (RFC 7348 §5)');
  const flags = buf[offset]!;
  if ((flags & VXLAN_FLAG_I) === 0) {
    throw new WireError(
      offset,
      `VXLAN flags 0x${flags.toString(16).padStart(2, '0')} lack the I flag, which "MUST be set to 1 for a valid VXLAN Network ID" (RFC 7348 §5)`,
    );
  }
  return { vni: readVxlanVni(buf, offset), flags, payloadOffset: VXLAN_HEADER_LEN };
}
