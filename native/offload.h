/*
 * Segmentation and receive offload in user space, shared by tap.c and
 * udp.c: TCP super-frames read from a TAP with IFF_VNET_HDR are cut into
 * gso_size segments with their headers and checksums fixed, and runs of
 * consecutive segments of one TCP flow are merged into one super-frame with
 * a virtio_net_hdr before they are written to a TAP.
 */
#ifndef NETCTL_OFFLOAD_H
#define NETCTL_OFFLOAD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "batch_layout.h"

/* struct virtio_net_hdr without num_buffers: what a TAP with IFF_VNET_HDR uses by default. */
#define VNET_HDR_LEN 10
/* A coalesced frame's virtio header and its copied headers (Ethernet 14, IPv6 40 or IPv4 ≤ 60, TCP ≤ 60). */
#define COALESCE_SCRATCH 192
/* iovecs one coalesced frame may need: the headers, then one payload per segment. */
#define COALESCE_MAX_SEGMENTS 64

/*
 * VXLAN remote checksum offload (RCO, as Linux's vxlan `remcsumtx`): a flag
 * in the header's second byte, and in its last byte the offset of the inner
 * checksum's start from the inner Ethernet header, in 2-byte units (bit 7
 * would mark UDP; netctl sends it for TCP only). The inner checksum field
 * then holds only the pseudo-header sum, as with NEEDS_CSUM, and the
 * receiver completes it or hands it on as partial.
 */
#define VXLAN_RCO_FLAG_BYTE 1
#define VXLAN_RCO_FLAG 0x20
#define VXLAN_RCO_START_BYTE 7
#define VXLAN_RCO_UDP 0x80
#define VXLAN_RCO_MAX_START 254

/* How far a received frame's TCP checksum can be trusted (offload_frame_t.checksum). */
enum {
  /* Unknown: check it before handing the frame on as checksummed. */
  OFFLOAD_CSUM_UNVERIFIED = NETCTL_CHECKSUM_UNVERIFIED,
  /* Computed by a sender we trust (a netctl VTEP). */
  OFFLOAD_CSUM_TRUSTED = NETCTL_CHECKSUM_TRUSTED,
  /* 2 and above: partial (RCO); the value is the header's RCO octet (start / 2, VXLAN_RCO_UDP). */
  OFFLOAD_CSUM_PARTIAL_MIN = NETCTL_CHECKSUM_PARTIAL_MIN,
};

/* A frame in memory that the caller owns. */
typedef struct {
  const uint8_t *data;
  size_t len;
  /* OFFLOAD_CSUM_UNVERIFIED, OFFLOAD_CSUM_TRUSTED, or the RCO octet of a partial checksum. */
  uint8_t checksum;
} offload_frame_t;

/*
 * Cuts `frame` (a virtio_net_hdr then an Ethernet frame) into the frames it
 * stands for, each written to `out` as `prefix` then the inner frame, back to
 * back (*total_len bytes in all); each is *segment_len bytes except possibly
 * the last. A TCP
 * super-frame (GSO_TCPV4/6) gives gso_size segments with IP length, ID and
 * checksum, TCP sequence, flags and checksum fixed; any other frame gives
 * itself, with its partial checksum (NEEDS_CSUM) completed. With
 * `remote_csum` (`prefix` is then a VXLAN header) TCP checksums are left
 * partial and marked with RCO in each copy of the prefix where the layout
 * allows. Returns the number of frames, OFFLOAD_MALFORMED or OFFLOAD_NO_ROOM.
 */
#define OFFLOAD_MALFORMED (-1)
#define OFFLOAD_NO_ROOM (-2)
int offload_segment(const uint8_t *frame, size_t len, const uint8_t *prefix, size_t prefix_len, bool remote_csum,
                    uint8_t *out, size_t out_cap, size_t *segment_len, size_t *total_len);

/*
 * As offload_segment for a TCP super-frame, without copying its payload:
 * segment i is iov[2i] (`prefix` and its headers, written to `headers`,
 * *headers_len bytes in all) then iov[2i+1] (its payload, a slice of `frame`,
 * which must outlive the iovecs). Returns the number of segments,
 * OFFLOAD_NOT_GSO for a frame without GSO (use offload_segment),
 * OFFLOAD_MALFORMED or OFFLOAD_NO_ROOM (headers_cap or iov_cap too small).
 */
#define OFFLOAD_NOT_GSO (-3)
int offload_segment_iov(const uint8_t *frame, size_t len, const uint8_t *prefix, size_t prefix_len, bool remote_csum,
                        uint8_t *headers,
                        size_t headers_cap, struct iovec *iov, size_t iov_cap, size_t *segment_len,
                        size_t *headers_len);

/*
 * How many frames offload_segment makes of `frame` at most, reading only its
 * headers (1 for a frame without GSO); OFFLOAD_MALFORMED for a super-frame
 * it would refuse.
 */
long offload_segment_count(const uint8_t *frame, size_t len);

/*
 * Completes the partial checksum of a frame (checksum >= OFFLOAD_CSUM_PARTIAL_MIN)
 * in place, for a TAP without IFF_VNET_HDR; false when it does not fit the frame.
 */
bool offload_complete_partial(uint8_t *frame, size_t len, uint8_t checksum);

/*
 * Plans the next frame to write to a TAP with IFF_VNET_HDR from frames[0..count):
 * a run of consecutive segments of one TCP flow merged into one super-frame,
 * or frames[0] alone. Fills iov (at most COALESCE_MAX_SEGMENTS + 1) with the
 * virtio header (in `scratch`, with copied headers when merged) and the
 * payloads; returns how many input frames it consumed (≥ 1).
 */
size_t offload_coalesce_next(const offload_frame_t *frames, size_t count, uint8_t *scratch, struct iovec *iov,
                             int *iov_count);

#endif
