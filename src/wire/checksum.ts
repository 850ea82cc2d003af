/**
 * The Internet checksum (RFC 1071): a ones' complement sum of 16-bit
 * big-endian words. Sums are kept unfolded so pieces (pseudo-header, header,
 * payload) can be added before one final fold.
 */

/**
 * Adds the 16-bit words of `length` bytes at offset to `initial`; an odd last
 * byte is padded with zero (RFC 1071 §1). The result is not folded. A double
 * holds the carries exactly far beyond any packet size.
 */
export function onesComplementSum(buf: Uint8Array, offset: number, length: number, initial = 0): number {
  let sum = initial;
  const end = offset + length;
  const evenEnd = end - (length & 1);
  let i = offset;
  for (; i + 8 <= evenEnd; i += 8) {
    sum +=
      ((buf[i]! << 8) | buf[i + 1]!) +
      ((buf[i + 2]! << 8) | buf[i + 3]!) +
      ((buf[i + 4]! << 8) | buf[i + 5]!) +
      ((buf[i + 6]! << 8) | buf[i + 7]!);
  }
  for (; i < evenEnd; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (evenEnd !== end) sum += buf[evenEnd]! << 8;
  return sum;
}

/** Folds the carries into 16 bits and takes the complement: the value to put in a checksum field. */
export function foldChecksum(sum: number): number {
  let folded = sum;
  while (folded > 0xffff) folded = (folded % 0x10000) + Math.floor(folded / 0x10000);
  return ~folded & 0xffff;
}

/** The checksum of `length` bytes; over a header that includes its own valid checksum it is 0. */
export function internetChecksum(buf: Uint8Array, offset: number, length: number): number {
  return foldChecksum(onesComplementSum(buf, offset, length));
}

/** Unfolded sum of the IPv4 pseudo-header (RFC 768, RFC 9293 §3.1). */
export function pseudoHeaderSumIPv4(src: number, dst: number, protocol: number, length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length;
}

/** Unfolded sum of the IPv6 pseudo-header (RFC 8200 §8.1); `length` is the upper-layer length. */
export function pseudoHeaderSumIPv6(
  src: Uint8Array,
  srcOffset: number,
  dst: Uint8Array,
  dstOffset: number,
  nextHeader: number,
  length: number,
): number {
  const addresses = onesComplementSum(dst, dstOffset, 16, onesComplementSum(src, srcOffset, 16));
  return addresses + Math.floor(length / 0x10000) + (length % 0x10000) + nextHeader;
}

/**
 * The checksum a transport header at offset should carry, skipping its own
 * checksum field at `fieldOffset` (relative to offset) so the caller need not
 * zero it first. `initial` is the pseudo-header sum.
 */
export function checksumSkippingField(
  buf: Uint8Array,
  offset: number,
  length: number,
  fieldOffset: number,
  initial: number,
): number {
  const before = onesComplementSum(buf, offset, fieldOffset, initial);
  return foldChecksum(onesComplementSum(buf, offset + fieldOffset + 2, length - fieldOffset - 2, before));
}
