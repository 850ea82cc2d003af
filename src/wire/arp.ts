/**
 * ARP for IPv4 over Ethernet (RFC 826), the only pairing an overlay sees.
 * Offsets are relative to the start of the ARP packet.
 */
import { readU16, requireBytes, requireRoom, writeU16 } from './bytes.js';
import { ETHERNET_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4 } from './ethernet.js';
import { WireError } from './error.js';
import { readIPv4, writeIPv4 } from './ipv4addr.js';
import { readMac, writeMac } from './mac.js';

export const ARP_LEN = 28;
export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;
/** Ethernet header plus ARP packet, without padding to the 60-byte minimum. */
export const ARP_FRAME_LEN = ETHERNET_HEADER_LEN + ARP_LEN;

const HARDWARE_ETHERNET = 1;
const HARDWARE_TYPE = 0;
const PROTOCOL_TYPE = 2;
const HARDWARE_LEN = 4;
const PROTOCOL_LEN = 5;
const OPERATION = 6;
const SENDER_MAC = 8;
const SENDER_IP = 14;
const TARGET_MAC = 18;
const TARGET_IP = 24;

export interface ArpRepr {
  operation: number;
  senderMac: number;
  senderIp: number;
  targetMac: number;
  targetIp: number;
}

/**
 * True when `length` bytes at offset hold an Ethernet/IPv4 ARP packet; the
 * allocation-free check before using the accessors on the receive path.
 */
export function arpCheck(buf: Uint8Array, offset: number, length: number): boolean {
  return (
    offset >= 0 &&
    length >= ARP_LEN &&
    offset + length <= buf.length &&
    readU16(buf, offset + HARDWARE_TYPE) === HARDWARE_ETHERNET &&
    readU16(buf, offset + PROTOCOL_TYPE) === ETHERTYPE_IPV4 &&
    buf[offset + HARDWARE_LEN] === 6 &&
    buf[offset + PROTOCOL_LEN] === 4
  );
}

/* Accessors: the caller has checked the packet with arpCheck or decodeArp. */

export function arpOperation(buf: Uint8Array, offset: number): number {
  return readU16(buf, offset + OPERATION);
}

export function arpSenderMac(buf: Uint8Array, offset: number): number {
  return readMac(buf, offset + SENDER_MAC);
}

export function arpSenderIp(buf: Uint8Array, offset: number): number {
  return readIPv4(buf, offset + SENDER_IP);
}

export function arpTargetMac(buf: Uint8Array, offset: number): number {
  return readMac(buf, offset + TARGET_MAC);
}

export function arpTargetIp(buf: Uint8Array, offset: number): number {
  return readIPv4(buf, offset + TARGET_IP);
}

export function decodeArp(buf: Uint8Array, offset = 0): ArpRepr {
  requireBytes(buf, offset, ARP_LEN, 'ARP packet (RFC 826)');
  const hardwareType = readU16(buf, offset + HARDWARE_TYPE);
  if (hardwareType !== HARDWARE_ETHERNET) {
    throw new WireError(
      offset + HARDWARE_TYPE,
      `ARP hardware type ${hardwareType}, only Ethernet (1) is supported (RFC 826)`,
    );
  }
  const protocolType = readU16(buf, offset + PROTOCOL_TYPE);
  if (protocolType !== ETHERTYPE_IPV4) {
    throw new WireError(
      offset + PROTOCOL_TYPE,
      `ARP protocol type 0x${protocolType.toString(16).padStart(4, '0')}, only IPv4 (0x0800) is supported (RFC 826)`,
    );
  }
  const hardwareLen = buf[offset + HARDWARE_LEN]!;
  if (hardwareLen !== 6) {
    throw new WireError(
      offset + HARDWARE_LEN,
      `ARP hardware address length ${hardwareLen}, Ethernet needs 6 (RFC 826)`,
    );
  }
  const protocolLen = buf[offset + PROTOCOL_LEN]!;
  if (protocolLen !== 4) {
    throw new WireError(offset + PROTOCOL_LEN, `ARP protocol address length ${protocolLen}, IPv4 needs 4 (RFC 826)`);
  }
  return {
    operation: arpOperation(buf, offset),
    senderMac: arpSenderMac(buf, offset),
    senderIp: arpSenderIp(buf, offset),
    targetMac: arpTargetMac(buf, offset),
    targetIp: arpTargetIp(buf, offset),
  };
}

function writeArp(
  operation: number,
  senderMac: number,
  senderIp: number,
  targetMac: number,
  targetIp: number,
  buf: Uint8Array,
  offset: number,
): void {
  writeU16(HARDWARE_ETHERNET, buf, offset + HARDWARE_TYPE);
  writeU16(ETHERTYPE_IPV4, buf, offset + PROTOCOL_TYPE);
  buf[offset + HARDWARE_LEN] = 6;
  buf[offset + PROTOCOL_LEN] = 4;
  writeU16(operation, buf, offset + OPERATION);
  writeMac(senderMac, buf, offset + SENDER_MAC);
  writeIPv4(senderIp, buf, offset + SENDER_IP);
  writeMac(targetMac, buf, offset + TARGET_MAC);
  writeIPv4(targetIp, buf, offset + TARGET_IP);
}

/** Writes the 28-byte packet at offset and returns 28. */
export function encodeArp(repr: ArpRepr, buf: Uint8Array, offset = 0): number {
  requireRoom(buf, offset, ARP_LEN, 'ARP packet');
  writeArp(repr.operation, repr.senderMac, repr.senderIp, repr.targetMac, repr.targetIp, buf, offset);
  return ARP_LEN;
}

/**
 * Writes a whole Ethernet frame answering `request`: "request.targetIp is at
 * answerMac", sent to the requester. Returns the bytes written (42); the TAP
 * takes frames shorter than the 60-byte wire minimum, as the kernel's own ARP
 * replies are.
 */
export function writeArpReply(request: ArpRepr, answerMac: number, buf: Uint8Array, offset = 0): number {
  requireRoom(buf, offset, ARP_FRAME_LEN, 'ARP reply frame');
  writeMac(request.senderMac, buf, offset);
  writeMac(answerMac, buf, offset + 6);
  writeU16(ETHERTYPE_ARP, buf, offset + 12);
  writeArp(
    ARP_REPLY,
    answerMac,
    request.targetIp,
    request.senderMac,
    request.senderIp,
    buf,
    offset + ETHERNET_HEADER_LEN,
  );
  return ARP_FRAME_LEN;
}
