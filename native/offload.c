/*
 * Segmentation and receive offload in user space (see offload.h), plus two
 * pure functions for JavaScript, offloadSegment and offloadCoalesce, that
 * run the same code on buffers (tests, and frames the VTEP floods).
 *
 * Checksums are summed as native-order words into 64 bits with end-around
 * carry (RFC 1071 §2: the sum does not depend on byte order), so a folded
 * result is already in network order.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/virtio_net.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"
#include "offload.h"

#define ETH_HLEN 14
#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_IPV6 0x86dd
#define IPPROTO_TCP_NUMBER 6
#define IPPROTO_UDP_NUMBER 17
/* UDP segmentation offload (USO), Linux 6.2 and later for TAP writes; older uapi headers lack the name. */
#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif
#define UDP_HEADER_LEN 8
#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_CWR 0x80
#define TCP_CHECKSUM_OFFSET 16
#define UDP_CHECKSUM_OFFSET 6
/* The largest IPv4 total length or IPv6 payload length. */
#define IP_MAX_LENGTH 65535
#define VXLAN_PREFIX_LEN 8

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static void put32(uint8_t *p, uint32_t v) {
  put16(p, (uint16_t)(v >> 16));
  put16(p + 2, (uint16_t)v);
}
/* virtio_net_hdr fields are little-endian on a TAP (no TUNSETVNETBE). */
static uint16_t getle16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static void putle16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

static uint64_t add_carry(uint64_t sum, uint64_t word) {
  sum += word;
  return sum + (sum < word);
}

/* Folds a 64-bit sum to 32 bits, so that 32-bit words can be added to it without overflow. */
static uint64_t fold32(uint64_t sum) {
  sum = (sum & 0xffffffffu) + (sum >> 32);
  return (sum & 0xffffffffu) + (sum >> 32);
}

/* Adds the tail (< 16 bytes) of a region. */
static uint64_t csum_tail(const uint8_t *p, size_t len, uint64_t sum) {
  for (; len >= 4; p += 4, len -= 4) {
    uint32_t word;
    memcpy(&word, p, 4);
    sum += word;
  }
  if (len >= 2) {
    uint16_t word;
    memcpy(&word, p, 2);
    sum += word;
    p += 2;
    len -= 2;
  }
  if (len == 1) {
    /* The odd byte is the high-order byte of a zero-padded word (RFC 1071 §1). */
    uint8_t pad[2] = {p[0], 0};
    uint16_t word;
    memcpy(&word, pad, 2);
    sum += word;
  }
  return sum;
}

/*
 * Unfolded ones' complement sum of `len` bytes starting at an even offset of
 * the checksummed data. 32-bit words go into four 64-bit accumulators, which
 * cannot overflow for any packet and keep the additions independent.
 */
static uint64_t csum_partial(const uint8_t *p, size_t len, uint64_t sum) {
  uint64_t s0 = fold32(sum), s1 = 0, s2 = 0, s3 = 0;
  for (; len >= 16; p += 16, len -= 16) {
    uint32_t w[4];
    memcpy(w, p, 16);
    s0 += w[0];
    s1 += w[1];
    s2 += w[2];
    s3 += w[3];
  }
  return csum_tail(p, len, fold32(s0) + fold32(s1) + fold32(s2) + fold32(s3));
}

/* Copies `len` bytes and sums them in the same pass (as csum_partial). */
static uint64_t csum_copy(uint8_t *dst, const uint8_t *src, size_t len, uint64_t sum) {
  uint64_t s0 = fold32(sum), s1 = 0, s2 = 0, s3 = 0;
  for (; len >= 16; src += 16, dst += 16, len -= 16) {
    uint32_t w[4];
    memcpy(w, src, 16);
    memcpy(dst, w, 16);
    s0 += w[0];
    s1 += w[1];
    s2 += w[2];
    s3 += w[3];
  }
  memcpy(dst, src, len);
  return csum_tail(src, len, fold32(s0) + fold32(s1) + fold32(s2) + fold32(s3));
}

static uint16_t csum_fold(uint64_t sum) {
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)sum;
}

/* Stores a checksum computed in network order. */
static void put_csum(uint8_t *p, uint16_t csum) { memcpy(p, &csum, 2); }

/* Pseudo-header sum over IPv4 (addresses at ip+12) or IPv6 (at ip+8), RFC 9293 §3.1, RFC 768, RFC 8200 §8.1. */
static uint64_t pseudo_sum_of(const uint8_t *ip, bool v4, uint32_t l4_len, uint32_t protocol) {
  uint64_t sum = v4 ? csum_partial(ip + 12, 8, 0) : csum_partial(ip + 8, 32, 0);
  sum = add_carry(sum, htonl(l4_len));
  return add_carry(sum, htonl(protocol));
}

static uint64_t pseudo_sum(const uint8_t *ip, bool v4, uint32_t l4_len) { return pseudo_sum_of(ip, v4, l4_len, IPPROTO_TCP_NUMBER); }

static void ipv4_fix_checksum(uint8_t *ip, size_t header_len) {
  ip[10] = ip[11] = 0;
  put_csum(ip + 10, (uint16_t)~csum_fold(csum_partial(ip, header_len, 0)));
}

/* A TCP super-frame's layout, read once from its virtio_net_hdr and headers. */
typedef struct {
  const uint8_t *frame; /* the Ethernet frame, after the virtio header */
  size_t len;
  bool v4;
  size_t ip_header_len, tcp_header_len, headers, payload, count;
  uint16_t gso_size, id;
  uint32_t seq;
  uint8_t tcp_flags;
  uint64_t addresses; /* pseudo-header sum of the addresses and protocol */
} super_frame_t;

/* Fills `sf` for a GSO_TCPV4/6 frame (0), or says why not: OFFLOAD_MALFORMED, or 1 for a frame without GSO. */
static int super_frame(const uint8_t *in, size_t in_len, super_frame_t *sf) {
  if (in_len < VNET_HDR_LEN + ETH_HLEN) return OFFLOAD_MALFORMED;
  uint8_t gso_type = in[1] & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
  if (gso_type == VIRTIO_NET_HDR_GSO_NONE) return 1;
  uint16_t gso_size = getle16(in + 4), csum_start = getle16(in + 6), csum_offset = getle16(in + 8);
  const uint8_t *frame = in + VNET_HDR_LEN;
  size_t len = in_len - VNET_HDR_LEN;
  bool v4 = gso_type == VIRTIO_NET_HDR_GSO_TCPV4;
  if (!v4 && gso_type != VIRTIO_NET_HDR_GSO_TCPV6) return OFFLOAD_MALFORMED;
  if (get16(frame + 12) != (v4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6) || csum_offset != TCP_CHECKSUM_OFFSET)
    return OFFLOAD_MALFORMED;
  const size_t ip_off = ETH_HLEN, tcp_off = csum_start;
  size_t ip_header_len = 0;
  if (v4) {
    ip_header_len = (size_t)(frame[ip_off] & 0x0f) * 4;
    if (frame[ip_off] >> 4 != 4 || ip_header_len < 20 || ip_off + ip_header_len != tcp_off) return OFFLOAD_MALFORMED;
  } else if (frame[ip_off] >> 4 != 6 || tcp_off < ip_off + 40) {
    return OFFLOAD_MALFORMED;
  }
  if (tcp_off + 20 > len) return OFFLOAD_MALFORMED;
  size_t tcp_header_len = (size_t)(frame[tcp_off + 12] >> 4) * 4;
  size_t headers = tcp_off + tcp_header_len;
  if (tcp_header_len < 20 || headers > len || gso_size == 0) return OFFLOAD_MALFORMED;
  sf->frame = frame;
  sf->len = len;
  sf->v4 = v4;
  sf->ip_header_len = ip_header_len;
  sf->tcp_header_len = tcp_header_len;
  sf->headers = headers;
  sf->payload = len - headers;
  sf->count = sf->payload == 0 ? 1 : (sf->payload + gso_size - 1) / gso_size;
  sf->gso_size = gso_size;
  sf->seq = get32(frame + tcp_off + 4);
  sf->tcp_flags = frame[tcp_off + 13];
  sf->id = v4 ? get16(frame + ip_off + 4) : 0;
  sf->addresses = v4 ? csum_partial(frame + ip_off + 12, 8, 0) : csum_partial(frame + ip_off + 8, 32, 0);
  sf->addresses = add_carry(sf->addresses, htonl(IPPROTO_TCP_NUMBER));
  return 0;
}

/*
 * True when the checksum of a transport header `tcp_off` bytes into the
 * inner frame may be left partial for the receiver (RCO can express it).
 */
static bool rco_fits(bool remote_csum, size_t prefix_len, size_t tcp_off) {
  return remote_csum && prefix_len == VXLAN_PREFIX_LEN && tcp_off >= ETH_HLEN && tcp_off % 2 == 0 &&
         tcp_off <= VXLAN_RCO_MAX_START;
}

/* Marks the VXLAN header at `vxlan` as carrying a frame whose TCP checksum, `tcp_off` bytes in, is partial. */
static void mark_rco(uint8_t *vxlan, size_t tcp_off) {
  vxlan[VXLAN_RCO_FLAG_BYTE] |= VXLAN_RCO_FLAG;
  vxlan[VXLAN_RCO_START_BYTE] = (uint8_t)(tcp_off / 2);
}

/*
 * Writes `prefix` and segment i's headers at `o`, fixed for that segment,
 * with the TCP checksum over the headers and the payload slice, or with
 * `partial` only its pseudo-header sum (and the prefix marked with RCO).
 * With `payload_out` the slice is copied there in the same pass.
 */
static void segment_headers(const super_frame_t *sf, size_t i, const uint8_t *prefix, size_t prefix_len, bool partial,
                            uint8_t *o, uint8_t *payload_out) {
  size_t segment_payload = i + 1 < sf->count ? sf->gso_size : sf->payload - i * sf->gso_size;
  const uint8_t *slice = sf->frame + sf->headers + i * sf->gso_size;
  memcpy(o, prefix, prefix_len);
  uint8_t *f = o + prefix_len;
  memcpy(f, sf->frame, sf->headers);
  size_t tcp_off = sf->headers - sf->tcp_header_len;
  uint8_t *ip = f + ETH_HLEN, *tcp = f + tcp_off;
  if (sf->v4) {
    put16(ip + 2, (uint16_t)(sf->ip_header_len + sf->tcp_header_len + segment_payload));
    put16(ip + 4, (uint16_t)(sf->id + i));
    ipv4_fix_checksum(ip, sf->ip_header_len);
  } else {
    put16(ip + 4, (uint16_t)(tcp - ip - 40 + sf->tcp_header_len + segment_payload));
  }
  put32(tcp + 4, sf->seq + (uint32_t)(i * sf->gso_size));
  uint8_t segment_flags = sf->tcp_flags;
  /* As the kernel's TSO: FIN and PSH only on the last segment, CWR only on the first. */
  if (i + 1 < sf->count) segment_flags &= (uint8_t)~(TCP_FIN | TCP_PSH);
  if (i > 0) segment_flags &= (uint8_t)~TCP_CWR;
  tcp[13] = segment_flags;
  uint32_t l4_len = (uint32_t)(sf->tcp_header_len + segment_payload);
  uint64_t sum = add_carry(sf->addresses, htonl(l4_len));
  if (partial) {
    /* The receiver sums from the TCP header on, this field included. */
    put_csum(tcp + 16, csum_fold(sum));
    mark_rco(o, tcp_off);
    if (payload_out) memcpy(payload_out, slice, segment_payload);
    return;
  }
  tcp[16] = tcp[17] = 0;
  sum = csum_partial(tcp, sf->tcp_header_len, sum);
  sum = payload_out ? csum_copy(payload_out, slice, segment_payload, sum) : csum_partial(slice, segment_payload, sum);
  put_csum(tcp + 16, (uint16_t)~csum_fold(sum));
}

int offload_segment(const uint8_t *in, size_t in_len, const uint8_t *prefix, size_t prefix_len, bool remote_csum,
                    uint8_t *out, size_t out_cap, size_t *segment_len, size_t *total_len) {
  super_frame_t sf;
  int kind = super_frame(in, in_len, &sf);
  if (kind == OFFLOAD_MALFORMED) return OFFLOAD_MALFORMED;
  if (kind == 1) {
    uint8_t flags = in[0];
    uint16_t csum_start = getle16(in + 6), csum_offset = getle16(in + 8);
    const uint8_t *frame = in + VNET_HDR_LEN;
    size_t len = in_len - VNET_HDR_LEN;
    if (prefix_len + len > out_cap) return OFFLOAD_NO_ROOM;
    memcpy(out, prefix, prefix_len);
    uint8_t *f = out + prefix_len;
    memcpy(f, frame, len);
    if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      if ((size_t)csum_start + csum_offset + 2 > len) return OFFLOAD_MALFORMED;
      if (csum_offset == TCP_CHECKSUM_OFFSET && rco_fits(remote_csum, prefix_len, csum_start)) {
        mark_rco(out, csum_start);
        *segment_len = *total_len = prefix_len + len;
        return 1;
      }
      /* The field holds the pseudo-header sum already: sum everything from csum_start over it. */
      uint16_t csum = (uint16_t)~csum_fold(csum_partial(f + csum_start, len - csum_start, 0));
      /* As the kernel does: 0 is sent as its other form, which UDP requires (RFC 768). */
      put_csum(f + csum_start + csum_offset, csum == 0 ? 0xffff : csum);
    }
    *segment_len = *total_len = prefix_len + len;
    return 1;
  }
  size_t head = prefix_len + sf.headers, stride = head + sf.gso_size;
  if (sf.count * head + sf.payload > out_cap) return OFFLOAD_NO_ROOM;
  bool partial = rco_fits(remote_csum, prefix_len, sf.headers - sf.tcp_header_len);
  for (size_t i = 0; i < sf.count; i++)
    segment_headers(&sf, i, prefix, prefix_len, partial, out + i * stride, out + i * stride + head);
  *segment_len = sf.count == 1 ? prefix_len + sf.len : stride;
  *total_len = sf.count * head + sf.payload;
  return (int)sf.count;
}

long offload_segment_count(const uint8_t *in, size_t in_len) {
  super_frame_t sf;
  int kind = super_frame(in, in_len, &sf);
  if (kind == OFFLOAD_MALFORMED) return OFFLOAD_MALFORMED;
  return kind == 1 ? 1 : (long)sf.count;
}

int offload_segment_iov(const uint8_t *in, size_t in_len, const uint8_t *prefix, size_t prefix_len, bool remote_csum,
                        uint8_t *headers,
                        size_t headers_cap, struct iovec *iov, size_t iov_cap, size_t *segment_len,
                        size_t *headers_len) {
  super_frame_t sf;
  int kind = super_frame(in, in_len, &sf);
  if (kind != 0) return kind == 1 ? OFFLOAD_NOT_GSO : kind;
  size_t head = prefix_len + sf.headers;
  if (sf.count * head > headers_cap || 2 * sf.count > iov_cap) return OFFLOAD_NO_ROOM;
  bool partial = rco_fits(remote_csum, prefix_len, sf.headers - sf.tcp_header_len);
  for (size_t i = 0; i < sf.count; i++) {
    uint8_t *o = headers + i * head;
    segment_headers(&sf, i, prefix, prefix_len, partial, o, NULL);
    size_t segment_payload = i + 1 < sf.count ? sf.gso_size : sf.payload - i * sf.gso_size;
    iov[2 * i].iov_base = o;
    iov[2 * i].iov_len = head;
    iov[2 * i + 1].iov_base = (void *)(sf.frame + sf.headers + i * sf.gso_size);
    iov[2 * i + 1].iov_len = segment_payload;
  }
  *segment_len = sf.count == 1 ? prefix_len + sf.len : head + sf.gso_size;
  *headers_len = sf.count * head;
  return (int)sf.count;
}

typedef struct {
  bool v4;
  size_t tcp_off;  /* where the TCP (or, for datagram_info, UDP) header starts */
  size_t headers;  /* Ethernet, IP and TCP (UDP) headers */
  size_t payload;
  uint32_t seq;
  uint16_t id;
  uint8_t flags;
} segment_info_t;

/*
 * True for a TCP segment that may be merged: untagged, IPv4 without options
 * or fragmentation or IPv6 without extension headers, ACK with at most PSH
 * besides, some payload, and valid IPv4 and TCP checksums. The checksums are
 * checked because a merged frame goes to the kernel as NEEDS_CSUM, which it
 * then trusts; the TCP one only unless `checksummed`, as it costs a pass over
 * the payload. *verified says whether it was.
 */
static bool segment_info(const uint8_t *f, size_t len, bool checksummed, segment_info_t *info, bool *verified) {
  if (len < ETH_HLEN + 40) return false;
  const uint8_t *ip = f + ETH_HLEN;
  size_t l4_len;
  uint16_t type = get16(f + 12);
  if (type == ETHERTYPE_IPV4) {
    if (ip[0] != 0x45 || ip[9] != IPPROTO_TCP_NUMBER || (get16(ip + 6) & 0x3fff) != 0) return false;
    size_t total = get16(ip + 2);
    if (total < 40 || ETH_HLEN + total > len || csum_fold(csum_partial(ip, 20, 0)) != 0xffff) return false;
    info->v4 = true;
    info->tcp_off = ETH_HLEN + 20;
    info->id = get16(ip + 4);
    l4_len = total - 20;
  } else if (type == ETHERTYPE_IPV6) {
    if (len < ETH_HLEN + 60 || ip[0] >> 4 != 6 || ip[6] != IPPROTO_TCP_NUMBER) return false;
    l4_len = get16(ip + 4);
    if (l4_len < 20 || ETH_HLEN + 40 + l4_len > len) return false;
    info->v4 = false;
    info->tcp_off = ETH_HLEN + 40;
    info->id = 0;
  } else {
    return false;
  }
  const uint8_t *tcp = f + info->tcp_off;
  size_t tcp_header_len = (size_t)(tcp[12] >> 4) * 4;
  if (tcp_header_len < 20 || tcp_header_len >= l4_len) return false;
  info->flags = tcp[13];
  if ((info->flags & ~TCP_PSH) != TCP_ACK) return false;
  *verified = !checksummed;
  if (!checksummed && csum_fold(csum_partial(tcp, l4_len, pseudo_sum(ip, info->v4, (uint32_t)l4_len))) != 0xffff)
    return false;
  info->headers = info->tcp_off + tcp_header_len;
  info->payload = l4_len - tcp_header_len;
  info->seq = get32(tcp + 4);
  return true;
}

/* True when `next` continues the flow of `first` right after `last`; equal fields as Linux GRO requires. */
static bool continues(const uint8_t *first, const segment_info_t *first_info, const segment_info_t *last_info,
                      const uint8_t *next, const segment_info_t *next_info) {
  if (next_info->v4 != first_info->v4 || next_info->headers != first_info->headers) return false;
  if (last_info->seq + (uint32_t)last_info->payload != next_info->seq) return false;
  if (memcmp(first, next, ETH_HLEN) != 0) return false;
  const uint8_t *a = first + ETH_HLEN, *b = next + ETH_HLEN;
  if (first_info->v4) {
    /* Version to TOS, flags to protocol, addresses; the ID counts up by one (or stays, with DF). */
    if (memcmp(a, b, 2) != 0 || memcmp(a + 6, b + 6, 4) != 0 || memcmp(a + 12, b + 12, 8) != 0) return false;
    uint16_t expected = (uint16_t)(last_info->id + 1);
    if (next_info->id != expected && next_info->id != last_info->id) return false;
  } else if (memcmp(a, b, 4) != 0 || memcmp(a + 6, b + 6, 34) != 0) {
    return false;
  }
  const uint8_t *ta = first + first_info->tcp_off, *tb = next + next_info->tcp_off;
  /* Ports, acknowledgment, offset, window, urgent pointer and options; flags were checked already. */
  size_t tcp_header_len = first_info->headers - first_info->tcp_off;
  return memcmp(ta, tb, 4) == 0 && memcmp(ta + 8, tb + 8, 5) == 0 && memcmp(ta + 14, tb + 14, 2) == 0 &&
         memcmp(ta + 18, tb + 18, tcp_header_len - 18) == 0;
}

/*
 * True for a UDP datagram that may be merged into a UDP_L4 super-frame: as
 * segment_info's rules for the IP header, a UDP length that matches it, some
 * payload, and a checksum that is present and, unless `checksummed`, valid
 * (the merged frame goes to the kernel as NEEDS_CSUM, which then trusts it).
 */
static bool datagram_info(const uint8_t *f, size_t len, bool checksummed, segment_info_t *info, bool *verified) {
  if (len < ETH_HLEN + 28) return false;
  const uint8_t *ip = f + ETH_HLEN;
  size_t l4_len;
  uint16_t type = get16(f + 12);
  if (type == ETHERTYPE_IPV4) {
    if (ip[0] != 0x45 || ip[9] != IPPROTO_UDP_NUMBER || (get16(ip + 6) & 0x3fff) != 0) return false;
    size_t total = get16(ip + 2);
    if (total < 28 || ETH_HLEN + total > len || csum_fold(csum_partial(ip, 20, 0)) != 0xffff) return false;
    info->v4 = true;
    info->tcp_off = ETH_HLEN + 20;
    l4_len = total - 20;
  } else if (type == ETHERTYPE_IPV6) {
    if (len < ETH_HLEN + 48 || ip[0] >> 4 != 6 || ip[6] != IPPROTO_UDP_NUMBER) return false;
    l4_len = get16(ip + 4);
    if (ETH_HLEN + 40 + l4_len > len) return false;
    info->v4 = false;
    info->tcp_off = ETH_HLEN + 40;
  } else {
    return false;
  }
  const uint8_t *udp = f + info->tcp_off;
  /* No checksum (IPv4's 0) is not made one by merging. */
  if (l4_len <= UDP_HEADER_LEN || get16(udp + 4) != l4_len || get16(udp + 6) == 0) return false;
  *verified = !checksummed;
  if (!checksummed && csum_fold(csum_partial(udp, l4_len, pseudo_sum_of(ip, info->v4, (uint32_t)l4_len, IPPROTO_UDP_NUMBER))) != 0xffff)
    return false;
  info->headers = info->tcp_off + UDP_HEADER_LEN;
  info->payload = l4_len - UDP_HEADER_LEN;
  info->id = 0;
  info->seq = 0;
  info->flags = 0;
  return true;
}

/* True when `next` is a datagram of the flow of `first`: the same Ethernet, IP (but ID and length) and UDP ports. */
static bool same_udp_flow(const uint8_t *first, const segment_info_t *first_info, const uint8_t *next, const segment_info_t *next_info) {
  if (next_info->v4 != first_info->v4 || memcmp(first, next, ETH_HLEN) != 0) return false;
  const uint8_t *a = first + ETH_HLEN, *b = next + ETH_HLEN;
  if (first_info->v4 ? memcmp(a, b, 2) != 0 || memcmp(a + 6, b + 6, 4) != 0 || memcmp(a + 12, b + 12, 8) != 0
                     : memcmp(a, b, 4) != 0 || memcmp(a + 6, b + 6, 34) != 0)
    return false;
  return memcmp(first + first_info->tcp_off, next + next_info->tcp_off, 4) == 0;
}

/*
 * Merges frames[0..) into one UDP_L4 super-frame when they are datagrams of
 * one flow with payloads of one length (the last perhaps shorter), as Linux
 * UDP GRO does for forwarding; the kernel cuts it again (each datagram whole,
 * its checksum computed) wherever it goes. Returns how many it merged (0 or
 * 1: not merged; *verified as datagram_info says for frames[0]).
 */
static size_t coalesce_udp(const offload_frame_t *frames, size_t count, uint8_t *scratch, struct iovec *iov, int *iov_count,
                           bool *mergeable, bool *verified) {
  segment_info_t first, next;
  bool next_verified;
  *mergeable = datagram_info(frames[0].data, frames[0].len, frames[0].checksum != OFFLOAD_CSUM_UNVERIFIED, &first, verified);
  if (!*mergeable) return 0;
  size_t merged = 1, total = first.payload, last_payload = first.payload;
  iov[1].iov_base = (void *)(frames[0].data + first.headers);
  iov[1].iov_len = first.payload;
  while (merged < count && merged < COALESCE_MAX_SEGMENTS && last_payload == first.payload &&
         datagram_info(frames[merged].data, frames[merged].len, frames[merged].checksum != OFFLOAD_CSUM_UNVERIFIED, &next,
                       &next_verified) &&
         next.payload <= first.payload && first.headers - ETH_HLEN + total + next.payload <= IP_MAX_LENGTH &&
         same_udp_flow(frames[0].data, &first, frames[merged].data, &next)) {
    iov[1 + merged].iov_base = (void *)(frames[merged].data + next.headers);
    iov[1 + merged].iov_len = next.payload;
    total += next.payload;
    last_payload = next.payload;
    merged++;
  }
  if (merged == 1) return 1;
  uint8_t *copy = scratch + VNET_HDR_LEN;
  memcpy(copy, frames[0].data, first.headers);
  uint8_t *ip = copy + ETH_HLEN, *udp = copy + first.tcp_off;
  uint32_t udp_len = (uint32_t)(UDP_HEADER_LEN + total);
  if (first.v4) {
    put16(ip + 2, (uint16_t)(20 + udp_len));
    ipv4_fix_checksum(ip, 20);
  } else {
    put16(ip + 4, (uint16_t)udp_len);
  }
  put16(udp + 4, (uint16_t)udp_len);
  /* NEEDS_CSUM: the field holds the folded pseudo-header sum; the kernel completes each datagram's. */
  put_csum(udp + 6, csum_fold(pseudo_sum_of(ip, first.v4, udp_len, IPPROTO_UDP_NUMBER)));
  scratch[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  scratch[1] = VIRTIO_NET_HDR_GSO_UDP_L4;
  putle16(scratch + 2, (uint16_t)first.headers);
  putle16(scratch + 4, (uint16_t)first.payload);
  putle16(scratch + 6, (uint16_t)first.tcp_off);
  putle16(scratch + 8, UDP_CHECKSUM_OFFSET);
  iov[0].iov_base = scratch;
  iov[0].iov_len = VNET_HDR_LEN + first.headers;
  *iov_count = (int)merged + 1;
  return merged;
}

/* Where a partial checksum (an RCO octet) starts, and where its field is relative to that. */
static size_t partial_start(uint8_t checksum) { return (size_t)2 * (checksum & ~VXLAN_RCO_UDP); }
static size_t partial_offset(uint8_t checksum) {
  return checksum & VXLAN_RCO_UDP ? UDP_CHECKSUM_OFFSET : TCP_CHECKSUM_OFFSET;
}
static bool partial_fits(size_t len, uint8_t checksum) {
  return partial_start(checksum) >= ETH_HLEN && partial_start(checksum) + partial_offset(checksum) + 2 <= len;
}

bool offload_complete_partial(uint8_t *frame, size_t len, uint8_t checksum) {
  if (!partial_fits(len, checksum)) return false;
  size_t start = partial_start(checksum);
  uint16_t csum = (uint16_t)~csum_fold(csum_partial(frame + start, len - start, 0));
  /* UDP sends 0 as its other form (RFC 768). */
  if (csum == 0 && (checksum & VXLAN_RCO_UDP)) csum = 0xffff;
  put_csum(frame + start + partial_offset(checksum), csum);
  return true;
}

size_t offload_coalesce_next(const offload_frame_t *frames, size_t count, uint8_t *scratch, struct iovec *iov,
                             int *iov_count) {
  segment_info_t first, last, next;
  bool verified, next_verified;
  memset(scratch, 0, VNET_HDR_LEN);
  bool mergeable = segment_info(frames[0].data, frames[0].len, frames[0].checksum != OFFLOAD_CSUM_UNVERIFIED, &first, &verified);
  size_t merged = 1;
  if (mergeable) {
    size_t total = first.payload;
    last = first;
    iov[1].iov_base = (void *)(frames[0].data + first.headers);
    iov[1].iov_len = first.payload;
    while (merged < count && merged < COALESCE_MAX_SEGMENTS && !(last.flags & TCP_PSH) &&
           last.payload == first.payload &&
           segment_info(frames[merged].data, frames[merged].len, frames[merged].checksum != OFFLOAD_CSUM_UNVERIFIED, &next,
                        &next_verified) &&
           next.payload <= first.payload &&
           first.headers - ETH_HLEN + total + next.payload <= IP_MAX_LENGTH &&
           continues(frames[0].data, &first, &last, frames[merged].data, &next)) {
      iov[1 + merged].iov_base = (void *)(frames[merged].data + next.headers);
      iov[1 + merged].iov_len = next.payload;
      total += next.payload;
      last = next;
      merged++;
    }
    if (merged > 1) {
      uint8_t *copy = scratch + VNET_HDR_LEN;
      memcpy(copy, frames[0].data, first.headers);
      uint8_t *ip = copy + ETH_HLEN, *tcp = copy + first.tcp_off;
      size_t tcp_header_len = first.headers - first.tcp_off;
      if (first.v4) {
        put16(ip + 2, (uint16_t)(20 + tcp_header_len + total));
        ipv4_fix_checksum(ip, 20);
      } else {
        put16(ip + 4, (uint16_t)(tcp_header_len + total));
      }
      tcp[13] = first.flags | (last.flags & TCP_PSH);
      /* NEEDS_CSUM: the field holds the folded pseudo-header sum; the kernel completes it. */
      put_csum(tcp + 16, csum_fold(pseudo_sum(ip, first.v4, (uint32_t)(tcp_header_len + total))));
      scratch[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
      scratch[1] = first.v4 ? VIRTIO_NET_HDR_GSO_TCPV4 : VIRTIO_NET_HDR_GSO_TCPV6;
      putle16(scratch + 2, (uint16_t)first.headers);
      putle16(scratch + 4, (uint16_t)first.payload);
      putle16(scratch + 6, (uint16_t)first.tcp_off);
      putle16(scratch + 8, TCP_CHECKSUM_OFFSET);
      iov[0].iov_base = scratch;
      iov[0].iov_len = VNET_HDR_LEN + first.headers;
      *iov_count = (int)merged + 1;
      return merged;
    }
    /* Checked already: spare the kernel a second pass (else the kernel checks it). */
    if (verified) scratch[0] = VIRTIO_NET_HDR_F_DATA_VALID;
  } else {
    size_t udp_merged = coalesce_udp(frames, count, scratch, iov, iov_count, &mergeable, &verified);
    if (udp_merged > 1) return udp_merged;
    if (mergeable && verified) scratch[0] = VIRTIO_NET_HDR_F_DATA_VALID;
  }
  if (frames[0].checksum >= OFFLOAD_CSUM_PARTIAL_MIN && partial_fits(frames[0].len, frames[0].checksum)) {
    /* Left partial by the sender (RCO): the kernel completes it, as for a merged frame. */
    scratch[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    putle16(scratch + 6, (uint16_t)partial_start(frames[0].checksum));
    putle16(scratch + 8, (uint16_t)partial_offset(frames[0].checksum));
  }
  iov[0].iov_base = scratch;
  iov[0].iov_len = VNET_HDR_LEN;
  iov[1].iov_base = (void *)frames[0].data;
  iov[1].iov_len = frames[0].len;
  *iov_count = 2;
  return 1;
}

static napi_value throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

/* offloadSegment(frame, prefix, out, remoteChecksum?) -> { count, segmentLength, length } or null for a
 * malformed frame. */
static napi_value offload_segment_js(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  uint8_t *frame, *prefix, *out;
  size_t frame_len, prefix_len, out_len, segment_len, length;
  bool remote_csum = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage = "offloadSegment(frame: Uint8Array, prefix: Uint8Array, out: Uint8Array, remoteChecksum?: boolean)";
  napi_valuetype fourth = napi_undefined;
  if (argc >= 4) napi_typeof(env, argv[3], &fourth);
  if (argc < 3) return throw_type(env, usage);
  if (!netctl_get_bytes(env, argv[0], &frame, &frame_len, usage) ||
      !netctl_get_bytes(env, argv[1], &prefix, &prefix_len, usage) || !netctl_get_bytes(env, argv[2], &out, &out_len, usage) ||
      (fourth != napi_undefined && !netctl_get_bool(env, argv[3], &remote_csum, usage)))
    return NULL;
  int count = offload_segment(frame, frame_len, prefix, prefix_len, remote_csum, out, out_len, &segment_len, &length);
  napi_value result;
  if (count == OFFLOAD_NO_ROOM) {
    napi_throw_range_error(env, NULL, "output buffer too small for the segments");
    return NULL;
  }
  if (count == OFFLOAD_MALFORMED) {
    napi_get_null(env, &result);
    return result;
  }
  napi_value count_value, segment_value, length_value;
  napi_create_object(env, &result);
  napi_create_uint32(env, (uint32_t)count, &count_value);
  napi_create_uint32(env, (uint32_t)segment_len, &segment_value);
  napi_create_uint32(env, (uint32_t)length, &length_value);
  napi_set_named_property(env, result, "count", count_value);
  napi_set_named_property(env, result, "segmentLength", segment_value);
  napi_set_named_property(env, result, "length", length_value);
  return result;
}

/* offloadCoalesce(frames, checksum?) -> Buffer[]: what a write to a TAP with IFF_VNET_HDR would carry,
 * frame by frame; checksum[i] is frame i's offload_frame_t.checksum (default unverified). */
static napi_value offload_coalesce_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  bool is_array = false;
  uint8_t *checksum = NULL;
  size_t checksum_len = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc >= 1) napi_is_array(env, argv[0], &is_array);
  napi_valuetype second = napi_undefined;
  if (argc >= 2) napi_typeof(env, argv[1], &second);
  if (!is_array || (second != napi_undefined &&
                    !netctl_typed_array(env, argv[1], napi_uint8_array, (void **)&checksum, &checksum_len)))
    return throw_type(env, "offloadCoalesce(frames: Uint8Array[], checksum?: Uint8Array)");
  uint32_t count;
  napi_get_array_length(env, argv[0], &count);
  offload_frame_t *frames = calloc(count ? count : 1, sizeof *frames);
  if (!frames) return throw_type(env, "out of memory");
  for (uint32_t i = 0; i < count; i++) {
    napi_value element;
    uint8_t *data;
    napi_get_element(env, argv[0], i, &element);
    if (!netctl_get_bytes(env, element, &data, &frames[i].len, "frames must be Uint8Arrays")) {
      free(frames);
      return NULL;
    }
    frames[i].data = data;
    frames[i].checksum = i < checksum_len ? checksum[i] : OFFLOAD_CSUM_UNVERIFIED;
  }
  napi_value result;
  napi_create_array(env, &result);
  uint8_t scratch[COALESCE_SCRATCH];
  struct iovec iov[COALESCE_MAX_SEGMENTS + 1];
  uint32_t produced = 0;
  for (size_t done = 0; done < count;) {
    int iov_count;
    done += offload_coalesce_next(frames + done, count - done, scratch, iov, &iov_count);
    size_t total = 0;
    for (int i = 0; i < iov_count; i++) total += iov[i].iov_len;
    napi_value buffer;
    uint8_t *bytes;
    napi_create_buffer(env, total, (void **)&bytes, &buffer);
    for (int i = 0; i < iov_count; i++) {
      memcpy(bytes, iov[i].iov_base, iov[i].iov_len);
      bytes += iov[i].iov_len;
    }
    napi_set_element(env, result, produced++, buffer);
  }
  free(frames);
  return result;
}

/* offloadCompletePartial(frame, checksum) -> whether the partial checksum fitted the frame and was completed in place. */
static napi_value offload_complete_partial_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint8_t *frame;
  size_t len;
  uint32_t checksum;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage = "offloadCompletePartial(frame: Uint8Array, checksum: number (an RCO octet, 2-255))";
  if (argc < 2) return throw_type(env, usage);
  if (!netctl_get_bytes(env, argv[0], &frame, &len, usage) || !netctl_get_uint32(env, argv[1], &checksum, usage))
    return NULL;
  if (checksum < OFFLOAD_CSUM_PARTIAL_MIN || checksum > UINT8_MAX) return throw_type(env, usage);
  napi_value result;
  napi_get_boolean(env, offload_complete_partial(frame, len, (uint8_t)checksum), &result);
  return result;
}

napi_status netctl_register_offload(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"offloadSegment", NULL, offload_segment_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"offloadCoalesce", NULL, offload_coalesce_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"offloadCompletePartial", NULL, offload_complete_partial_js, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
