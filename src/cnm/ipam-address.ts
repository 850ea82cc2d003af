/**
 * Address arithmetic for IPAM: parsing and formatting IPv4 and IPv6
 * addresses and CIDR blocks as bigints, containment and overlap, and the
 * addresses of a subnet that are never handed out.
 */
import { IPv4, IPv4CidrRange, IPv4Prefix, IPv6, IPv6CidrRange, IPv6Prefix, collapseIPv6Number } from 'ip-num';
import { InvalidArgument } from '../errors.js';

export type Family = 4 | 6;

interface Address {
  readonly family: Family;
  readonly value: bigint;
}

export interface Subnet {
  readonly family: Family;
  readonly prefix: number;
  readonly first: bigint;
  readonly last: bigint;
  readonly text: string;
}

export const BITS: Record<Family, number> = { 4: 32, 6: 128 };
/** Characters an address may contain; rejects whitespace, signs and zone IDs before ip-num sees the text. */
const ADDRESS_CHARS = /^[0-9A-Fa-f:.]+$/;
const PREFIX_LENGTH = /^(0|[1-9][0-9]{0,2})$/;

export function familyName(family: Family): string {
  return family === 4 ? 'IPv4' : 'IPv6';
}

export function parseAddress(text: string): Address | undefined {
  if (!ADDRESS_CHARS.test(text)) return undefined;
  try {
    if (text.includes(':')) return { family: 6, value: IPv6.fromString(text).value };
    return { family: 4, value: IPv4.fromString(text).value };
  } catch {
    return undefined;
  }
}

export function formatAddress(family: Family, value: bigint): string {
  if (family === 4) return IPv4.fromNumber(value).toString();
  return collapseIPv6Number(IPv6.fromBigInt(value).toString());
}

/** The CIDR as written (host bits possibly set), or undefined when malformed. */
export function parseCidr(text: string): { address: Address; prefix: number } | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const address = parseAddress(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (!address || !PREFIX_LENGTH.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > BITS[address.family]) return undefined;
  return { address, prefix };
}

export function subnetOf(family: Family, value: bigint, prefix: number): Subnet {
  const range =
    family === 4
      ? new IPv4CidrRange(IPv4.fromNumber(value), new IPv4Prefix(BigInt(prefix)))
      : new IPv6CidrRange(IPv6.fromBigInt(value), new IPv6Prefix(BigInt(prefix)));
  const first = range.getFirst().value;
  return { family, prefix, first, last: range.getLast().value, text: `${formatAddress(family, first)}/${prefix}` };
}

/** Parses a CIDR that must have no host bits set; `what` names it in errors ("subnet", "ip-range"). */
export function parseBlock(text: string, what: string): Subnet {
  const cidr = parseCidr(text);
  if (!cidr) throw new InvalidArgument(`invalid ${what} ${JSON.stringify(text)}`);
  const block = subnetOf(cidr.address.family, cidr.address.value, cidr.prefix);
  if (block.first !== cidr.address.value) {
    throw new InvalidArgument(`invalid ${what} ${text}: it should be ${block.text}`);
  }
  return block;
}

export function contains(subnet: Subnet, value: bigint): boolean {
  return subnet.first <= value && value <= subnet.last;
}

export function overlaps(a: { first: bigint; last: bigint }, b: { first: bigint; last: bigint }): boolean {
  return a.first <= b.last && b.first <= a.last;
}

/**
 * Addresses of a subnet that are never usable by anything: the IPv4 network
 * and broadcast addresses and the IPv6 subnet-router anycast address. Point-
 * to-point prefixes (IPv4 /31 and /32, RFC 3021; IPv6 /127 and /128, RFC 6164)
 * have none, so every address in them can be used.
 */
export function unusableAddresses(subnet: Subnet): Map<bigint, string> {
  const unusable = new Map<bigint, string>();
  if (subnet.family === 4 && subnet.prefix <= 30) {
    unusable.set(subnet.first, 'the network address');
    unusable.set(subnet.last, 'the broadcast address');
  } else if (subnet.family === 6 && subnet.prefix <= 126) {
    unusable.set(subnet.first, 'the subnet-router anycast address');
  }
  return unusable;
}

/** Parses an address that must belong to `subnet`; `what` names it in errors ("gateway", 'auxiliary address "db"'). */
export function parseMember(text: string, subnet: Subnet, what: string): bigint {
  const address = parseAddress(text);
  if (!address) throw new InvalidArgument(`invalid ${what} ${JSON.stringify(text)}`);
  if (address.family !== subnet.family) {
    throw new InvalidArgument(
      `${what} ${text} is ${familyName(address.family)} but subnet ${subnet.text} is ${familyName(subnet.family)}`,
    );
  }
  if (!contains(subnet, address.value)) throw new InvalidArgument(`${what} ${text} is not in subnet ${subnet.text}`);
  const reason = unusableAddresses(subnet).get(address.value);
  if (reason !== undefined) throw new InvalidArgument(`${what} ${text} is ${reason} of subnet ${subnet.text}`);
  return address.value;
}
