/*
 * The batches the addon and TypeScript exchange, as numbers per item in a
 * Uint32Array: the same constants as src/sys/batch-layout.ts, which
 * documents each layout. test/sys/batch-layout.test.ts reads this file and
 * the addon's `batchLayout` export and fails when either side differs.
 */
#ifndef NETCTL_BATCH_LAYOUT_H
#define NETCTL_BATCH_LAYOUT_H

/* FrameBatch: frame i is LENGTH bytes at OFFSET of buffers[BUFFER]. */
#define NETCTL_FRAME_STRIDE 3
#define NETCTL_FRAME_BUFFER 0
#define NETCTL_FRAME_OFFSET 1
#define NETCTL_FRAME_LENGTH 2

/* Frames a TAP delivers in one wake-up, at most. */
#define NETCTL_TAP_BATCH 64

/* FrameBatch.checksum octets; from PARTIAL_MIN up, the RCO octet of a partial checksum. */
#define NETCTL_CHECKSUM_UNVERIFIED 0
#define NETCTL_CHECKSUM_TRUSTED 1
#define NETCTL_CHECKSUM_PARTIAL_MIN 2

/* ReceivedDatagrams: datagram i is LENGTH bytes at OFFSET of buffers[BUFFER], from
 * addresses[ADDRESS] port PORT; SEGMENT_SIZE > 0 for a UDP GRO run of that size; FLAGS
 * holds DATAGRAM_* bits. */
#define NETCTL_DATAGRAM_STRIDE 7
#define NETCTL_DATAGRAM_BUFFER 0
#define NETCTL_DATAGRAM_OFFSET 1
#define NETCTL_DATAGRAM_LENGTH 2
#define NETCTL_DATAGRAM_SEGMENT_SIZE 3
#define NETCTL_DATAGRAM_PORT 4
#define NETCTL_DATAGRAM_ADDRESS 5
#define NETCTL_DATAGRAM_FLAGS 6

/* FLAGS bit: the datagram came out of ESP (opened with the socket's table): a synthetic VXLAN
 * header with the VNI the SA's tag names, then the frame. */
#define NETCTL_DATAGRAM_SEALED 1

/* Datagrams one receive callback delivers at most. */
#define NETCTL_DATAGRAM_MAX 256

/* udpSendFrames' result: datagrams made, datagrams the kernel took, and the esp_result_t that
 * refused the whole call (0 when none did). */
#define NETCTL_SEND_RESULT_DATAGRAMS 0
#define NETCTL_SEND_RESULT_SENT 1
#define NETCTL_SEND_RESULT_REFUSED 2
#define NETCTL_SEND_RESULT_LENGTH 3

/* The fast path's counters (flow.c) in the Float64Array JavaScript reads: FLOW_FIELDS per slot. A
 * network's slot counts frames of its TAP (FLOW_NET_*), a (network, remote VTEP) slot datagrams and
 * frame bytes (FLOW_REMOTE_*), slot 0 datagrams the kernel did not take (FLOW_SEND_DROPPED). */
#define NETCTL_FLOW_FIELDS 4
#define NETCTL_FLOW_NET_RX_FRAMES 0
#define NETCTL_FLOW_NET_TX_FRAMES 1
#define NETCTL_FLOW_NET_DROP_WRITE_FAILED 2
#define NETCTL_FLOW_REMOTE_TX_DATAGRAMS 0
#define NETCTL_FLOW_REMOTE_TX_BYTES 1
#define NETCTL_FLOW_REMOTE_RX_DATAGRAMS 2
#define NETCTL_FLOW_REMOTE_RX_BYTES 3
#define NETCTL_FLOW_SEND_DROPPED 0

/* Every constant above, for addon.c to export as `batchLayout`. */
#define NETCTL_BATCH_LAYOUT(X)                                                                                     \
  X(FRAME_STRIDE)                                                                                                  \
  X(FRAME_BUFFER)                                                                                                  \
  X(FRAME_OFFSET)                                                                                                  \
  X(FRAME_LENGTH)                                                                                                  \
  X(TAP_BATCH)                                                                                                     \
  X(CHECKSUM_UNVERIFIED)                                                                                           \
  X(CHECKSUM_TRUSTED)                                                                                              \
  X(CHECKSUM_PARTIAL_MIN)                                                                                          \
  X(DATAGRAM_STRIDE)                                                                                               \
  X(DATAGRAM_BUFFER)                                                                                               \
  X(DATAGRAM_OFFSET)                                                                                               \
  X(DATAGRAM_LENGTH)                                                                                               \
  X(DATAGRAM_SEGMENT_SIZE)                                                                                         \
  X(DATAGRAM_PORT)                                                                                                 \
  X(DATAGRAM_ADDRESS)                                                                                              \
  X(DATAGRAM_FLAGS)                                                                                                \
  X(DATAGRAM_SEALED)                                                                                               \
  X(DATAGRAM_MAX)                                                                                                  \
  X(SEND_RESULT_DATAGRAMS)                                                                                         \
  X(SEND_RESULT_SENT)                                                                                              \
  X(SEND_RESULT_REFUSED)                                                                                           \
  X(SEND_RESULT_LENGTH)                                                                                             \
  X(FLOW_FIELDS)                                                                                                   \
  X(FLOW_NET_RX_FRAMES)                                                                                            \
  X(FLOW_NET_TX_FRAMES)                                                                                            \
  X(FLOW_NET_DROP_WRITE_FAILED)                                                                                    \
  X(FLOW_REMOTE_TX_DATAGRAMS)                                                                                      \
  X(FLOW_REMOTE_TX_BYTES)                                                                                          \
  X(FLOW_REMOTE_RX_DATAGRAMS)                                                                                      \
  X(FLOW_REMOTE_RX_BYTES)                                                                                          \
  X(FLOW_SEND_DROPPED)

#endif
