/**
 * Every batch the addon and TypeScript exchange is a few numbers per item in
 * a Uint32Array (no object per frame or datagram). This module names each
 * layout once; native/batch_layout.h holds the same numbers for the C side,
 * and test/sys/batch-layout.test.ts fails when the two disagree.
 *
 * Read a batch as `index[STRIDE * i + FIELD]`: hot loops compute
 * `at = STRIDE * i` once and add the field names, which costs what the
 * literals cost.
 */

/** FrameBatch (src/sys/tap.ts): frame i is LENGTH bytes at OFFSET of buffers[BUFFER]. */
export const FRAME_STRIDE = 3;
export const FRAME_BUFFER = 0;
export const FRAME_OFFSET = 1;
export const FRAME_LENGTH = 2;

/** Frames a TAP delivers in one wake-up, at most. */
export const TAP_BATCH = 64;

/**
 * FrameBatch.checksum, one octet per frame: how far its transport checksum
 * can be trusted (see FrameBatch). Values from CHECKSUM_PARTIAL_MIN up are
 * the VXLAN RCO octet of a checksum the sender left partial.
 */
export const CHECKSUM_UNVERIFIED = 0;
export const CHECKSUM_TRUSTED = 1;
export const CHECKSUM_PARTIAL_MIN = 2;

/**
 * ReceivedDatagrams (src/sys/udp.ts): datagram i is LENGTH bytes at OFFSET of
 * buffers[BUFFER], from addresses[ADDRESS] port PORT; SEGMENT_SIZE > 0 says
 * it holds datagrams of that size back to back that UDP GRO coalesced;
 * FLAGS holds DATAGRAM_* bits.
 */
export const DATAGRAM_STRIDE = 7;
export const DATAGRAM_BUFFER = 0;
export const DATAGRAM_OFFSET = 1;
export const DATAGRAM_LENGTH = 2;
export const DATAGRAM_SEGMENT_SIZE = 3;
export const DATAGRAM_PORT = 4;
export const DATAGRAM_ADDRESS = 5;
export const DATAGRAM_FLAGS = 6;

/**
 * FLAGS bit: the datagram (every one of a GRO run) came out of ESP, opened
 * with the socket's ESP table: a synthetic VXLAN header whose VNI is the
 * SA's tag, then the frame the sealed datagram carried.
 */
export const DATAGRAM_SEALED = 1;

/** Datagrams one receive callback delivers at most (4 recvmmsg of 64). */
export const DATAGRAM_MAX = 256;

/**
 * udpSendFrames' result: how many datagrams the frames made, how many the
 * kernel took, and why a sealed send was refused whole (an index into
 * ESP_RESULTS of src/sys/esp.ts; 0 when it was not).
 */
export const SEND_RESULT_DATAGRAMS = 0;
export const SEND_RESULT_SENT = 1;
export const SEND_RESULT_REFUSED = 2;
export const SEND_RESULT_LENGTH = 3;

/**
 * The fast path's counters (native/flow.c), FLOW_FIELDS numbers per slot of
 * a Float64Array the addon adds to and JavaScript reads and zeroes: a
 * network's slot counts its TAP's frames (FLOW_NET_*), a (network, remote
 * VTEP) slot datagrams and inner frame bytes (FLOW_REMOTE_*), and slot 0
 * datagrams the kernel did not take (FLOW_SEND_DROPPED).
 */
export const FLOW_FIELDS = 4;
export const FLOW_NET_RX_FRAMES = 0;
export const FLOW_NET_TX_FRAMES = 1;
export const FLOW_NET_DROP_WRITE_FAILED = 2;
export const FLOW_REMOTE_TX_DATAGRAMS = 0;
export const FLOW_REMOTE_TX_BYTES = 1;
export const FLOW_REMOTE_RX_DATAGRAMS = 2;
export const FLOW_REMOTE_RX_BYTES = 3;
export const FLOW_SEND_DROPPED = 0;
