/*
 * Batched UDP sockets (recvmmsg/sendmmsg), made inside any network
 * namespace (socket.c).
 *
 * Receiving follows tap.c: a uv_poll watches the fd (poller.c); each wake-up calls
 * recvmmsg up to UDP_ROUNDS times (UDP_BATCH datagrams each) into a
 * preallocated arena and hands JavaScript the datagrams as numbers in a
 * Uint32Array it owns (ReceivedDatagrams in src/sys/udp.ts), no object per
 * datagram. Unless the socket borrows buffers, each round's payloads are
 * copied back to back into one new Buffer. Source addresses are turned into
 * strings once per distinct address per call.
 *
 * With an ESP table attached (udpSetEspTable), the socket carries encrypted
 * overlays: frames sent with an SPI leave sealed (esp.h), one datagram per
 * segment, and received ESP datagrams are opened in place and handed on as
 * the plain VXLAN datagrams they stand for, marked NETCTL_DATAGRAM_SEALED.
 * Which SA a frame goes out on, and what a sealed or plain datagram may
 * carry, is decided in TypeScript.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "addon.h"
#include "batch_layout.h"
#include "esp.h"
#include "esp_handle.h"
#include "answers.h"
#include "flow.h"
#include "offload.h"
#include "poller.h"
#include "socket.h"

#define UDP_BATCH 64
/* recvmmsg calls per wake-up, so one busy socket cannot starve the loop. */
#define UDP_ROUNDS 4
/* The largest UDP payload (IPv6 without jumbograms: 65535 - 8). */
#define UDP_SLOT 65536
/* The most a UDP_SEGMENT send may carry: the largest IPv4 UDP payload. */
#define GSO_MAX_PAYLOAD (65535 - 20 - 8)
/* Segments per UDP_SEGMENT send (the kernel's UDP_MAX_SEGMENTS is 64 on older kernels). */
#define GSO_MAX_SEGMENTS 64
/* iovecs for one udpSendFrames flush: a header and a payload per segment, every message full. */
#define SEND_IOVS (UDP_BATCH * 2 * GSO_MAX_SEGMENTS)
/* Distinct source addresses remembered while building one batch. */
#define ADDRESS_CACHE 8
/* A sealed send cuts a super-frame's segments into a scratch of this much room for their headers and
 * this many (headers, payload) pairs; a frame with more segments (gso_size below 128) is dropped. */
#define SEAL_HEADERS UDP_SLOT
#define SEAL_MAX_SEGMENTS 512
/* No call can make this many datagrams: an SA with more sequence numbers left needs no count first. */
#define SEQUENCE_PLENTY ((uint64_t)1 << 62)
#define VXLAN_HEADER_LEN 8
#define VXLAN_FLAG_I 0x08

typedef struct udp {
  /* First, so that a udp_t is its poller. The arena: UDP_BATCH slots of UDP_SLOT where recvmmsg writes. */
  netctl_poller_t poller;
  int family; /* AF_INET or AF_INET6 */
  int gro;    /* UDP_GRO: a receive may hold several datagrams of one size */
  /* Shared by receive and send: both run on the loop thread, never at once. */
  struct mmsghdr msgs[UDP_BATCH];
  struct iovec iovs[UDP_BATCH];
  netctl_addr_t addrs[UDP_BATCH];
  /* UDP_GRO (receive) or UDP_SEGMENT (send) control messages. */
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } controls[UDP_BATCH];
  /* For udpSendFrames, made on first use: UDP_BATCH * UDP_SLOT bytes for segment headers and copied
   * frames, SEND_IOVS iovecs for the messages, and how many datagrams each message carries. */
  uint8_t *send_arena;
  struct iovec *send_iovs;
  uint32_t send_segments[UDP_BATCH];
  /* Per message of a udpSendFrames flush: 0 when its iovecs are (headers, payload) pairs; else the length
   * of each of the datagrams (sealed or copied) that lie back to back in its one iovec, the last perhaps shorter. */
  uint32_t send_sealed[UDP_BATCH];
  /* The ESP table attached (udpSetEspTable), held so that closing either side first is safe; NULL: none. */
  netctl_esp_handle_t *esp;
  /* For sealed sends of super-frames, made on first use: a frame's segment headers and their iovec pairs. */
  uint8_t *seal_headers;
  struct iovec *seal_iovs;
  /* The frames of one udpSendFrames call, grown as needed. */
  offload_frame_t *send_frames;
  uint32_t send_frames_cap;
  /* The fast path's networks and flow cache (flow.c), made when JavaScript first attaches one. */
  flow_table_t *flows;
  /* The embedded DNS's replies given again here (answers.c), made when JavaScript first stores one. */
  answer_table_t *answers;
} udp_t;

static void on_readable(netctl_poller_t *poller);
static void release_udp(netctl_poller_t *poller);

static const netctl_poller_kind_t udp_kind = {
    .resource_name = "netctl:UdpSocket",
    .not_a_handle = "expected a UDP socket handle",
    .closed_code = "ERR_SOCKET_CLOSED",
    .closed_message = "UDP socket is closed",
    .on_readable = on_readable,
    .release = release_udp,
};

/* The option's value, or NULL when `opts` lacks it or holds undefined there. */
static napi_value option_value(napi_env env, napi_value opts, const char *name) {
  bool has;
  if (napi_has_named_property(env, opts, name, &has) != napi_ok || !has) return NULL;
  napi_value value;
  napi_valuetype type;
  napi_get_named_property(env, opts, name, &value);
  napi_typeof(env, value, &type);
  return type == napi_undefined ? NULL : value;
}

static int get_bool_option(napi_env env, napi_value opts, const char *name, bool *out) {
  *out = false;
  napi_value value = option_value(env, opts, name);
  return value == NULL || netctl_get_bool(env, value, out, "boolean option expected") ? 0 : -1;
}

static int get_int_option(napi_env env, napi_value opts, const char *name, int32_t *out) {
  *out = 0;
  napi_value value = option_value(env, opts, name);
  const char *message = "non-negative integer option expected";
  if (value == NULL) return 0;
  if (!netctl_get_int32(env, value, out, message)) return -1;
  if (*out < 0) {
    napi_throw_type_error(env, NULL, message);
    return -1;
  }
  return 0;
}

/* Sets a buffer size; as root the FORCE variant passes net.core.[rw]mem_max. */
static int set_buffer_size(int fd, int force_option, int option, int size) {
  if (setsockopt(fd, SOL_SOCKET, force_option, &size, sizeof size) == 0) return 0;
  return setsockopt(fd, SOL_SOCKET, option, &size, sizeof size);
}

static udp_t *get_udp(napi_env env, napi_value value, bool open) {
  return (udp_t *)netctl_poller_get(env, value, &udp_kind, open);
}

udp_t *netctl_udp_get(napi_env env, napi_value value) { return get_udp(env, value, true); }

flow_table_t *netctl_udp_flows(udp_t *udp) { return udp->flows; }

void netctl_udp_set_flows(udp_t *udp, flow_table_t *flows) { udp->flows = flows; }

answer_table_t *netctl_udp_answers(udp_t *udp) { return udp->answers; }

void netctl_udp_set_answers(udp_t *udp, answer_table_t *answers) { udp->answers = answers; }

static void detach_table(udp_t *udp) {
  if (!udp->esp) return;
  netctl_esp_handle_release(udp->esp);
  udp->esp = NULL;
}

static void release_udp(netctl_poller_t *poller) {
  udp_t *udp = (udp_t *)poller;
  detach_table(udp);
  free(udp->send_arena);
  free(udp->send_iovs);
  free(udp->seal_headers);
  free(udp->seal_iovs);
  free(udp->send_frames);
  netctl_flow_free(udp->flows);
  netctl_answers_free(udp->answers);
  free(udp);
}

/* udpOpen(netnsPath, family, address, port, { reuseAddr, gro, borrowBuffers, dontFragment, recvBufferSize,
 * sendBufferSize }) -> { handle, port }. Binds a non-blocking UDP socket made in the namespace. With borrowBuffers,
 * received datagrams stay in the socket's own memory, valid until the callback returns. With dontFragment
 * every datagram leaves with DF and one larger than the path MTU fails (EMSGSIZE) instead of being
 * fragmented by this kernel (IP_PMTUDISC_DO; for an IPv6 socket, its IPv4-mapped traffic too). */
static napi_value udp_open(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  netctl_endpoint_t endpoint;
  if (!netctl_endpoint_args(env, info, argv, "udpOpen(netnsPath, family, address, port, opts)", &endpoint)) return NULL;
  int family = endpoint.family;
  bool reuse_addr, gro, borrow, dont_fragment;
  int32_t recv_buffer, send_buffer;
  if (get_bool_option(env, argv[4], "reuseAddr", &reuse_addr) != 0 ||
      get_bool_option(env, argv[4], "gro", &gro) != 0 ||
      get_bool_option(env, argv[4], "borrowBuffers", &borrow) != 0 ||
      get_bool_option(env, argv[4], "dontFragment", &dont_fragment) != 0 ||
      get_int_option(env, argv[4], "recvBufferSize", &recv_buffer) != 0 ||
      get_int_option(env, argv[4], "sendBufferSize", &send_buffer) != 0)
    return NULL;
  int fd = netctl_endpoint_socket(env, &endpoint, SOCK_DGRAM);
  if (fd < 0) return NULL;
  int one = 1, pmtudisc_do = IP_PMTUDISC_DO, pmtudisc6_do = IPV6_PMTUDISC_DO;
  netctl_addr_t bound;
  socklen_t bound_len = sizeof bound;
  const char *failed = NULL;
  if (reuse_addr && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
    failed = "setsockopt SO_REUSEADDR";
  else if (gro && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) != 0)
    failed = "setsockopt UDP_GRO";
  else if (dont_fragment && setsockopt(fd, SOL_IP, IP_MTU_DISCOVER, &pmtudisc_do, sizeof pmtudisc_do) != 0)
    failed = "setsockopt IP_MTU_DISCOVER";
  else if (dont_fragment && family == AF_INET6 &&
           setsockopt(fd, SOL_IPV6, IPV6_MTU_DISCOVER, &pmtudisc6_do, sizeof pmtudisc6_do) != 0)
    failed = "setsockopt IPV6_MTU_DISCOVER";
  else if (recv_buffer > 0 && set_buffer_size(fd, SO_RCVBUFFORCE, SO_RCVBUF, recv_buffer) != 0)
    failed = "setsockopt SO_RCVBUF";
  else if (send_buffer > 0 && set_buffer_size(fd, SO_SNDBUFFORCE, SO_SNDBUF, send_buffer) != 0)
    failed = "setsockopt SO_SNDBUF";
  else if (bind(fd, &endpoint.addr.sa, endpoint.addr_len) != 0)
    failed = "bind";
  else if (getsockname(fd, &bound.sa, &bound_len) != 0)
    failed = "getsockname";
  if (failed) {
    int err = errno;
    close(fd);
    return netctl_throw_errno(env, err, failed, NULL);
  }

  udp_t *udp = calloc(1, sizeof *udp);
  uint8_t *arena = malloc((size_t)UDP_BATCH * UDP_SLOT);
  if (!udp || !arena) {
    free(udp);
    free(arena);
    close(fd);
    return netctl_throw_errno(env, ENOMEM, "malloc", NULL);
  }
  udp->family = family;
  udp->gro = gro;
  napi_value handle = netctl_poller_open(env, &udp->poller, &udp_kind, fd, arena, (size_t)UDP_BATCH * UDP_SLOT, borrow);
  if (!handle) {
    free(arena);
    free(udp);
    close(fd);
    return NULL;
  }

  napi_value result, port_value;
  napi_create_object(env, &result);
  napi_create_uint32(env, ntohs(family == AF_INET ? bound.in4.sin_port : bound.in6.sin6_port), &port_value);
  napi_set_named_property(env, result, "handle", handle);
  napi_set_named_property(env, result, "port", port_value);
  return result;
}

/* One call delivers every round of a wake-up. */
_Static_assert(NETCTL_DATAGRAM_MAX == UDP_BATCH * UDP_ROUNDS, "a receive callback holds every round of a wake-up");

typedef struct {
  netctl_addr_t addr;
  uint32_t slot;
} cached_address_t;

/* What one call to JavaScript hands over: the index being filled, and the addresses named so far. */
typedef struct {
  uint32_t *index;
  napi_value buffers;
  napi_value addresses;
  uint32_t count;
  uint32_t buffer_count;
  cached_address_t cache[ADDRESS_CACHE];
  uint32_t slots;
} received_t;

/* The slot in `addresses` of the source address: a string made once per distinct address per call. */
static uint32_t address_slot(napi_env env, received_t *received, const netctl_addr_t *addr) {
  size_t compare = addr->sa.sa_family == AF_INET ? sizeof addr->in4.sin_addr : sizeof addr->in6.sin6_addr;
  const void *bytes = addr->sa.sa_family == AF_INET ? (const void *)&addr->in4.sin_addr : (const void *)&addr->in6.sin6_addr;
  uint32_t cached = received->slots < ADDRESS_CACHE ? received->slots : ADDRESS_CACHE;
  for (uint32_t i = 0; i < cached; i++) {
    const netctl_addr_t *seen = &received->cache[i].addr;
    const void *seen_bytes =
        seen->sa.sa_family == AF_INET ? (const void *)&seen->in4.sin_addr : (const void *)&seen->in6.sin6_addr;
    if (seen->sa.sa_family == addr->sa.sa_family && memcmp(seen_bytes, bytes, compare) == 0) return received->cache[i].slot;
  }
  char text[INET6_ADDRSTRLEN];
  inet_ntop(addr->sa.sa_family, bytes, text, sizeof text);
  napi_value value;
  napi_create_string_latin1(env, text, NAPI_AUTO_LENGTH, &value);
  uint32_t slot = received->slots++;
  napi_set_element(env, received->addresses, slot, value);
  if (slot < ADDRESS_CACHE) {
    received->cache[slot].addr = *addr;
    received->cache[slot].slot = slot;
  }
  return slot;
}

/* The JavaScript arrays a delivery fills, fetched for the first datagram that goes to JavaScript: a
 * wake-up whose datagrams the addon takes alone (the fast path, stored DNS replies) makes no handle. */
static bool open_received(udp_t *udp, received_t *received) {
  napi_value batch[3]; /* the index, the buffers, the addresses */
  size_t index_len = 0;
  if (!netctl_started_batch(udp->poller.env, &udp->poller.started, batch, 3, &received->index, &index_len) ||
      index_len < (size_t)NETCTL_DATAGRAM_STRIDE * NETCTL_DATAGRAM_MAX) {
    received->index = NULL;
    return false;
  }
  received->buffers = batch[1];
  received->addresses = batch[2];
  return true;
}

/* Calls onBatch(count) with what `received` holds, and starts it afresh. The fast path's frames go
 * to their TAPs first: the callee may detach their networks. */
static void deliver(udp_t *udp, received_t *received) {
  if (udp->flows) netctl_flow_write_pending(udp->flows);
  uint32_t count = received->count;
  received->count = 0;
  received->slots = 0;
  received->buffer_count = 0;
  netctl_poller_deliver(&udp->poller, count);
}

static void prepare_receive(udp_t *udp) {
  for (int i = 0; i < UDP_BATCH; i++) {
    udp->iovs[i].iov_base = udp->poller.arena + (size_t)i * UDP_SLOT;
    udp->iovs[i].iov_len = UDP_SLOT;
    struct msghdr *hdr = &udp->msgs[i].msg_hdr;
    memset(hdr, 0, sizeof *hdr);
    hdr->msg_name = &udp->addrs[i];
    hdr->msg_namelen = sizeof udp->addrs[i];
    hdr->msg_iov = &udp->iovs[i];
    hdr->msg_iovlen = 1;
    if (udp->gro) {
      hdr->msg_control = udp->controls[i].buf;
      hdr->msg_controllen = sizeof udp->controls[i].buf;
    }
  }
}

/* The segment size of a coalesced receive, 0 when it holds one datagram. */
static uint32_t gro_segment_size(struct msghdr *hdr) {
  for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(hdr); cmsg != NULL; cmsg = CMSG_NXTHDR(hdr, cmsg)) {
    if (cmsg->cmsg_level == SOL_UDP && cmsg->cmsg_type == UDP_GRO) {
      int size;
      memcpy(&size, CMSG_DATA(cmsg), sizeof size);
      return size > 0 ? (uint32_t)size : 0;
    }
  }
  return 0;
}

/* Where one recvmmsg's datagrams go for the callee: a fresh Buffer (`copy`), or the arena when borrowed. */
typedef struct {
  uint8_t *copy;
  napi_value fresh;
  size_t offset;
  /* `fresh`'s index in the buffers array since the last delivery; UINT32_MAX while it is not there. */
  uint32_t slot;
} round_t;

/*
 * Adds `len` bytes at `data` (in the arena) to the index. A full index is
 * delivered first (opened ESP runs may make more entries than recvmmsg
 * datagrams); false when the callee then stopped or closed the socket, and
 * the rest of the wake-up is not handed on.
 */
static bool emit(udp_t *udp, received_t *received, round_t *round, const uint8_t *data, size_t len, uint32_t segment_size,
                 uint32_t flags, const netctl_addr_t *from) {
  if (!received->index && !open_received(udp, received)) return false;
  if (received->count == NETCTL_DATAGRAM_MAX) {
    deliver(udp, received);
    round->slot = UINT32_MAX;
    if (udp->poller.closed || !udp->poller.polling) return false;
  }
  uint32_t *entry = received->index + (size_t)NETCTL_DATAGRAM_STRIDE * received->count;
  if (round->copy) {
    if (round->slot == UINT32_MAX) {
      round->slot = received->buffer_count++;
      napi_set_element(udp->poller.env, received->buffers, round->slot, round->fresh);
    }
    memcpy(round->copy + round->offset, data, len);
    entry[NETCTL_DATAGRAM_BUFFER] = round->slot;
    entry[NETCTL_DATAGRAM_OFFSET] = (uint32_t)round->offset;
    round->offset += len;
  } else {
    entry[NETCTL_DATAGRAM_BUFFER] = 0;
    entry[NETCTL_DATAGRAM_OFFSET] = (uint32_t)(data - udp->poller.arena);
  }
  entry[NETCTL_DATAGRAM_LENGTH] = (uint32_t)len;
  entry[NETCTL_DATAGRAM_SEGMENT_SIZE] = segment_size;
  entry[NETCTL_DATAGRAM_FLAGS] = flags;
  entry[NETCTL_DATAGRAM_PORT] = ntohs(from->sa.sa_family == AF_INET ? from->in4.sin_port : from->in6.sin6_port);
  entry[NETCTL_DATAGRAM_ADDRESS] = address_slot(udp->poller.env, received, from);
  received->count++;
  return true;
}

static inline uint32_t load32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * True when a datagram is ESP by its first word (esp.h): not how a VXLAN
 * header starts as netctl and Linux send one (flags 0x08, reserved bits 0,
 * RCO's bit perhaps), and not below ESP_SPI_MIN, where liveness probes
 * (src/wire/probe.ts: 0x000000FB) and RFC 3948's non-ESP marker lie. Shorter
 * than a word: not ESP, left to the VTEP to drop.
 */
static inline bool is_esp(const uint8_t *datagram, size_t len) {
  if (len < 4) return false;
  uint32_t word = load32(datagram);
  return word >= ESP_SPI_MIN && word != ESP_SPI_VXLAN && word != ESP_SPI_VXLAN_RCO;
}

/* A datagram's IPv4 source (host order), what esp_open checks a bound SA against; 0 for IPv6. */
static inline uint32_t ipv4_source(const netctl_addr_t *addr) {
  return addr->in4.sin_family == AF_INET ? ntohl(addr->in4.sin_addr.s_addr) : 0;
}

/* True when a receive (a GRO run of `size`, or one datagram) holds an ESP datagram. */
static bool holds_esp(const uint8_t *data, size_t len, uint32_t size) {
  size_t step = size ? size : len;
  for (size_t at = 0; at < len; at += step)
    if (is_esp(data + at, len - at < step ? len - at : step)) return true;
  return false;
}


/*
 * Opens the ESP datagrams of a receive (a GRO run of `size`, or one
 * datagram) in place and hands on (to `sink`) what it holds in runs the VTEP reads as
 * plain VXLAN: each opened frame behind a synthetic VXLAN header (I flag, the
 * VNI in the low 24 bits of the SA's tag) and moved down over the gaps ESP's
 * header and trailer leave, so that frames of one length form a GRO run again
 * (segment size 8 + that length; only a run's last may be shorter, as GRO's).
 * Frames of equal sealed length may differ by the padding, so a longer frame
 * starts a new run. Plain datagrams among them go on as they came, in runs
 * of their own. One that does not open is dropped (esp_open counts why) and
 * the rest closes up over it. Output never passes input, so moving down
 * overwrites only what was read.
 */
static bool open_datagrams(esp_table_t *table, uint8_t *data, size_t len, uint32_t size, uint32_t source, run_sink_t sink,
                           void *context) {
  size_t step = size ? size : len, out = 0;
  /* The run being built: run_len bytes at run_start, run_count datagrams of run_size (the first's length). */
  size_t run_start = 0, run_len = 0, run_size = 0, run_count = 0;
  uint32_t run_flags = 0;
  bool run_closed = false;
  for (size_t at = 0; at < len; at += step) {
    uint8_t *datagram = data + at;
    size_t datagram_len = len - at < step ? len - at : step, piece_len;
    uint32_t flags;
    if (is_esp(datagram, datagram_len)) {
      size_t frame_len;
      uint32_t tag;
      if (esp_open(table, datagram, datagram_len, source, &frame_len, &tag) != ESP_OK) continue;
      uint8_t *vxlan = data + out;
      memmove(vxlan + VXLAN_HEADER_LEN, datagram + ESP_HEADER_LEN, frame_len);
      memset(vxlan, 0, VXLAN_HEADER_LEN);
      vxlan[0] = VXLAN_FLAG_I;
      vxlan[4] = (uint8_t)(tag >> 16);
      vxlan[5] = (uint8_t)(tag >> 8);
      vxlan[6] = (uint8_t)tag;
      piece_len = VXLAN_HEADER_LEN + frame_len;
      flags = NETCTL_DATAGRAM_SEALED;
    } else {
      if (out != at) memmove(data + out, datagram, datagram_len);
      piece_len = datagram_len;
      flags = 0;
    }
    if (run_count > 0 && !run_closed && flags == run_flags && piece_len <= run_size) {
      run_closed = piece_len < run_size;
    } else {
      if (run_count > 0 && !sink(context, data + run_start, run_len, run_count > 1 ? (uint32_t)run_size : 0, run_flags))
        return false;
      run_start = out;
      run_len = run_count = 0;
      run_size = piece_len;
      run_flags = flags;
      run_closed = false;
    }
    run_len += piece_len;
    run_count++;
    out += piece_len;
  }
  return run_count == 0 || sink(context, data + run_start, run_len, run_count > 1 ? (uint32_t)run_size : 0, run_flags);
}

/* What the receive path's sink needs besides the run. */
typedef struct {
  udp_t *udp;
  received_t *received;
  round_t *round;
  const netctl_addr_t *from;
} emit_context_t;

static bool emit_run(void *context, const uint8_t *data, size_t len, uint32_t segment_size, uint32_t flags) {
  emit_context_t *c = context;
  return emit(c->udp, c->received, c->round, data, len, segment_size, flags, c->from);
}

/* A run through the fast path first: what it does not take goes on to emit_run. */
static bool flow_run(void *context, const uint8_t *data, size_t len, uint32_t segment_size, uint32_t flags) {
  emit_context_t *c = context;
  return netctl_flow_from_underlay(c->udp->flows, data, len, segment_size, flags, c->from, emit_run, context);
}

static void on_readable(netctl_poller_t *poller) {
  udp_t *udp = (udp_t *)poller;
  napi_env env = poller->env;
  received_t received = {0};
  /* Held for the whole wake-up: the callee may detach or close the table between two deliveries. */
  netctl_esp_handle_t *esp = udp->esp;
  if (esp) netctl_esp_handle_hold(esp);
  esp_table_t *table = esp ? netctl_esp_handle_table(esp) : NULL;
  bool go = true;
  for (int round_number = 0; go && round_number < UDP_ROUNDS && !poller->closed && poller->polling; round_number++) {
    prepare_receive(udp);
    int n = recvmmsg(poller->fd, udp->msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      /* EAGAIN: drained. Other errors (a pending ICMP error): deliver what
       * was read; the poll reports the socket again if it persists. */
      break;
    }
    round_t round = {.slot = UINT32_MAX};
    if (!poller->borrowed) {
      /* The callee may keep these: this round's payloads back to back in a fresh Buffer (opening only shortens them). */
      size_t total = 0;
      for (int i = 0; i < n; i++) total += udp->msgs[i].msg_len;
      if (napi_create_buffer(env, total, (void **)&round.copy, &round.fresh) != napi_ok) break;
    }
    for (int i = 0; go && i < n; i++) {
      uint8_t *data = udp->iovs[i].iov_base;
      size_t len = udp->msgs[i].msg_len;
      uint32_t size = udp->gro ? gro_segment_size(&udp->msgs[i].msg_hdr) : 0;
      if (size >= len) size = 0;
      if (udp->answers && !table && size == 0 &&
          netctl_answers_take(udp->answers, data, len, &udp->addrs[i], udp->msgs[i].msg_hdr.msg_namelen, poller->fd))
        continue;
      emit_context_t context = {udp, &received, &round, &udp->addrs[i]};
      run_sink_t sink = udp->flows ? flow_run : emit_run;
      if (table && holds_esp(data, len, size))
        go = open_datagrams(table, data, len, size, ipv4_source(&udp->addrs[i]), sink, &context);
      else
        go = sink(&context, data, len, size, 0);
    }
    if (udp->answers) netctl_answers_flush(udp->answers, poller->fd);
    /* Borrowed memory is overwritten by the next recvmmsg: hand each round over before it. */
    if (go && udp->flows) netctl_flow_write_pending(udp->flows);
    if (go && poller->borrowed && received.count > 0) deliver(udp, &received);
    if (n < UDP_BATCH) break;
  }
  if (go && received.count > 0 && !poller->closed && poller->polling) deliver(udp, &received);
  if (udp->flows && !poller->closed) netctl_flow_write_pending(udp->flows);
  if (esp) netctl_esp_handle_release(esp);
}

/* Collects runs as numbers for udpOpenDatagrams: offset, length, segment size, flags. */
typedef struct {
  napi_env env;
  napi_value array;
  const uint8_t *base;
  uint32_t count;
} js_runs_t;

static bool collect_run(void *context, const uint8_t *data, size_t len, uint32_t segment_size, uint32_t flags) {
  js_runs_t *runs = context;
  uint32_t values[4] = {(uint32_t)(data - runs->base), (uint32_t)len, segment_size, flags};
  for (int i = 0; i < 4; i++) {
    napi_value value;
    napi_create_uint32(runs->env, values[i], &value);
    napi_set_element(runs->env, runs->array, runs->count++, value);
  }
  return true;
}

/* udpOpenDatagrams(table, data, segmentSize) -> [offset, length, segmentSize, flags, …]: what the receive path
 * makes of one receive (a GRO run of segmentSize, or 0 for one datagram) with a table attached, in place in
 * `data`, for tests that must build runs GRO would make only by chance. A receive without ESP is left alone. */
static napi_value udp_open_datagrams(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage = "udpOpenDatagrams(table: ESP table handle, data: Uint8Array, segmentSize: number)";
  uint8_t *data;
  size_t len;
  uint32_t size;
  if (argc < 3) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  netctl_esp_handle_t *esp = netctl_esp_handle_get(env, argv[0]);
  if (!esp || !netctl_get_bytes(env, argv[1], &data, &len, usage) || !netctl_get_uint32(env, argv[2], &size, usage)) return NULL;
  if (size >= len) size = 0;
  js_runs_t runs = {env, NULL, data, 0};
  napi_create_array(env, &runs.array);
  if (holds_esp(data, len, size))
    open_datagrams(netctl_esp_handle_table(esp), data, len, size, 0, collect_run, &runs);
  else
    collect_run(&runs, data, len, size, 0);
  return runs.array;
}

/* udpStart(handle, onBatch, index, buffers, addresses): calls onBatch(count) for every wake-up
 * with data, having filled index (a Uint32Array of at least NETCTL_DATAGRAM_STRIDE * NETCTL_DATAGRAM_MAX),
 * buffers and addresses as ReceivedDatagrams (src/sys/udp.ts). buffers[0] is the socket's own
 * memory when it borrows buffers, valid until onBatch returns; else each round's datagrams are
 * in a fresh Buffer. */
static napi_value udp_start(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage =
      "udpStart(handle, onBatch: (count: number) => void, index: Uint32Array, buffers: Uint8Array[], addresses: string[])";
  if (argc < 5) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  udp_t *udp = get_udp(env, argv[0], true);
  if (!udp) return NULL;
  netctl_poller_start(env, &udp->poller, argv[0], argv[1], argv + 2, 3,
                      (size_t)NETCTL_DATAGRAM_STRIDE * NETCTL_DATAGRAM_MAX, usage);
  return NULL;
}

/* udpStop(handle): stops delivering; the kernel queues (then drops) datagrams. */
static napi_value udp_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  udp_t *udp = argc < 1 ? NULL : get_udp(env, argv[0], true);
  if (!udp) return NULL;
  netctl_poller_stop(&udp->poller);
  return NULL;
}

static int get_array(napi_env env, napi_value object, const char *name, napi_value *out, uint32_t *length) {
  bool is_array = false;
  if (napi_get_named_property(env, object, name, out) == napi_ok) napi_is_array(env, *out, &is_array);
  if (!is_array) return -1;
  napi_get_array_length(env, *out, length);
  return 0;
}

/* Errors that concern the whole socket rather than one datagram's destination. */
static int is_socket_error(int err) {
  return err == EBADF || err == ENOTSOCK || err == EFAULT || err == ENOMEM;
}

/* Reads an optional SPI argument (undefined or absent: 0, plain VXLAN). */
static bool get_spi(napi_env env, size_t argc, napi_value *argv, size_t at, uint32_t *spi, const char *usage) {
  *spi = 0;
  napi_valuetype type = napi_undefined;
  if (argc > at) napi_typeof(env, argv[at], &type);
  return type == napi_undefined || netctl_get_uint32(env, argv[at], spi, usage);
}

/* The outbound SA `spi` of the socket's table: ESP_OK, or ESP_UNKNOWN_SPI when there is none (or no table). */
static esp_result_t outbound_sa(udp_t *udp, uint32_t spi, esp_sa_t **sa) {
  esp_table_t *table = udp->esp ? netctl_esp_handle_table(udp->esp) : NULL;
  *sa = table ? esp_table_find(table, ESP_OUTBOUND, spi) : NULL;
  return *sa ? ESP_OK : ESP_UNKNOWN_SPI;
}

/* How many more datagrams `sa` may seal before its sequence numbers run out (RFC 4303 §3.3.3). */
static uint64_t sequence_left(const esp_sa_t *sa) {
  return UINT64_MAX - esp_sa_counters(sa)->sequence;
}

esp_sa_t *netctl_udp_outbound_sa(udp_t *udp, uint32_t spi) {
  esp_sa_t *sa;
  return outbound_sa(udp, spi, &sa) == ESP_OK && sequence_left(sa) >= SEQUENCE_PLENTY ? sa : NULL;
}

static bool make_send_arena(napi_env env, udp_t *udp) {
  if (!udp->send_arena && !(udp->send_arena = malloc((size_t)UDP_BATCH * UDP_SLOT))) {
    netctl_throw_errno(env, ENOMEM, "malloc", NULL);
    return false;
  }
  return true;
}

static napi_value throw_refused(napi_env env, esp_result_t refused, uint32_t spi) {
  char message[96];
  if (refused == ESP_UNKNOWN_SPI) {
    snprintf(message, sizeof message, "no outbound SA with SPI 0x%08x on this socket: nothing sent", spi);
    napi_throw_error(env, "ESP_UNKNOWN_SPI", message);
  } else {
    snprintf(message, sizeof message, "the outbound SA with SPI 0x%08x has too few sequence numbers left: nothing sent", spi);
    napi_throw_error(env, "ESP_SEQUENCE_EXHAUSTED", message);
  }
  return NULL;
}

/* Makes message n one datagram of `len` bytes at `data` to `addr` (addr_len bytes) port `port`. */
static void set_datagram(udp_t *udp, int n, const netctl_addr_t *addr, socklen_t addr_len, uint16_t port, uint8_t *data,
                         size_t len) {
  udp->addrs[n] = *addr;
  if (udp->family == AF_INET)
    udp->addrs[n].in4.sin_port = htons(port);
  else
    udp->addrs[n].in6.sin6_port = htons(port);
  udp->iovs[n].iov_base = data;
  udp->iovs[n].iov_len = len;
  struct msghdr *hdr = &udp->msgs[n].msg_hdr;
  memset(hdr, 0, sizeof *hdr);
  hdr->msg_name = &udp->addrs[n];
  hdr->msg_namelen = addr_len;
  hdr->msg_iov = &udp->iovs[n];
  hdr->msg_iovlen = 1;
}

/* Sends udp->msgs[0..n) (one datagram each): adds to *sent how many went, sets *full when the queue filled; a
 * datagram whose destination fails is skipped. Returns 0, or -errno for an error of the whole socket. */
static int send_datagrams(udp_t *udp, int n, uint32_t *sent, int *full) {
  int done = 0;
  while (done < n) {
    int r = sendmmsg(udp->poller.fd, udp->msgs + done, (unsigned int)(n - done), 0);
    if (r > 0) {
      done += r;
      *sent += (uint32_t)r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
      *full = 1;
      return 0;
    }
    if (r < 0 && is_socket_error(errno)) return -errno;
    /* This datagram's destination failed; the rest may still go. */
    done++;
  }
  return 0;
}

/* udpSendBatch(handle, { data, addresses, ports }, spi?) -> number sent. One
 * sendmmsg per UDP_BATCH datagrams. Stops when the socket's queue is full
 * (EAGAIN, ENOBUFS); a datagram that cannot be sent (unparseable or
 * unreachable address, too long) is skipped; socket-level errors throw.
 * With an SPI each datagram is a VXLAN header and a frame, and the frame
 * alone leaves sealed with that outbound SA of the socket's table (esp.h);
 * if there is no such SA or it has fewer sequence numbers left than there
 * are datagrams, nothing is sent and ESP_UNKNOWN_SPI or
 * ESP_SEQUENCE_EXHAUSTED is thrown. */
static napi_value udp_send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage = "udpSendBatch(handle, { data, addresses, ports }, spi?: number)";
  if (argc < 2) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  udp_t *udp = get_udp(env, argv[0], true);
  uint32_t spi;
  if (!udp || !get_spi(env, argc, argv, 2, &spi, usage)) return NULL;
  napi_value data, addresses, ports;
  uint32_t count, address_count, port_count;
  if (get_array(env, argv[1], "data", &data, &count) != 0 ||
      get_array(env, argv[1], "addresses", &addresses, &address_count) != 0 ||
      get_array(env, argv[1], "ports", &ports, &port_count) != 0 || address_count < count || port_count < count) {
    napi_throw_type_error(env, NULL, "expected { data: Uint8Array[], addresses: string[], ports: number[] } of one length");
    return NULL;
  }
  esp_sa_t *sa = NULL;
  if (spi != 0) {
    esp_result_t refused = outbound_sa(udp, spi, &sa);
    if (refused == ESP_OK && sequence_left(sa) < count) refused = ESP_SEQUENCE_EXHAUSTED;
    if (refused != ESP_OK) return throw_refused(env, refused, spi);
    if (!make_send_arena(env, udp)) return NULL;
  }

  /* The last destination parsed, reused while the next datagrams go to the same address. */
  char last_text[INET6_ADDRSTRLEN + 1] = "";
  netctl_addr_t last_addr;
  socklen_t last_len = 0;
  uint32_t sent = 0, next = 0;
  int full = 0;
  while (next < count && !full) {
    int n = 0;
    for (; next < count && n < UDP_BATCH; next++) {
      napi_value element;
      uint8_t *bytes;
      size_t size;
      napi_get_element(env, data, next, &element);
      if (!netctl_get_bytes(env, element, &bytes, &size, "data must hold Uint8Arrays")) return NULL;
      char text[INET6_ADDRSTRLEN + 1];
      size_t text_len;
      uint32_t port;
      napi_get_element(env, addresses, next, &element);
      if (!netctl_get_string(env, element, text, sizeof text, &text_len, "addresses must hold strings")) return NULL;
      napi_get_element(env, ports, next, &element);
      if (!netctl_get_uint32(env, element, &port, "ports must hold numbers")) return NULL;
      if (text_len >= INET6_ADDRSTRLEN || port == 0 || port > 65535) continue;
      if (last_len == 0 || strcmp(text, last_text) != 0) {
        last_len = netctl_parse_address(udp->family, text, 0, &last_addr);
        memcpy(last_text, text, text_len + 1);
      }
      if (last_len == 0) continue;
      if (sa) {
        /* The frame behind the VXLAN header, sealed into this message's slot of the send arena. */
        if (size < VXLAN_HEADER_LEN) continue;
        struct iovec frame = {bytes + VXLAN_HEADER_LEN, size - VXLAN_HEADER_LEN};
        uint8_t *sealed = udp->send_arena + (size_t)n * UDP_SLOT;
        if (esp_seal_gather(sa, &frame, 1, sealed, UDP_SLOT, &size) != ESP_OK) continue;
        bytes = sealed;
      }
      set_datagram(udp, n++, &last_addr, last_len, (uint16_t)port, bytes, size);
    }
    int rc = send_datagrams(udp, n, &sent, &full);
    if (rc != 0) return netctl_throw_errno(env, -rc, "sendmmsg", NULL);
  }
  napi_value result;
  napi_create_uint32(env, sent, &result);
  return result;
}

/* udpSendIndexed(handle, buffers, index, addresses, count) -> number sent. Datagram i is laid out as a
 * received one (batch_layout.h): LENGTH bytes at OFFSET of buffers[BUFFER], to addresses[ADDRESS] port
 * PORT (SEGMENT_SIZE and FLAGS are not read). So replies go back to where their queries came from with
 * no JavaScript object per datagram: no garbage for the collector at high rates. Sends as udpSendBatch
 * sends without an SPI; a datagram outside its buffer is skipped as one with a bad destination is. */
static napi_value udp_send_indexed(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage = "udpSendIndexed(handle, buffers: Uint8Array[], index: Uint32Array, addresses: string[], count: number)";
  if (argc < 5) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  udp_t *udp = get_udp(env, argv[0], true);
  if (!udp) return NULL;
  bool buffers_array = false, addresses_array = false;
  uint32_t *index;
  size_t index_len;
  uint32_t count;
  napi_is_array(env, argv[1], &buffers_array);
  napi_is_array(env, argv[3], &addresses_array);
  if (!buffers_array || !addresses_array || !netctl_typed_array(env, argv[2], napi_uint32_array, (void **)&index, &index_len) ||
      napi_get_value_uint32(env, argv[4], &count) != napi_ok || (size_t)count * NETCTL_DATAGRAM_STRIDE > index_len) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  /* Datagrams of one buffer and one destination come in runs: the last of each looked up is kept. */
  uint32_t buffer_slot = UINT32_MAX, address_slot = UINT32_MAX;
  uint8_t *base = NULL;
  size_t base_len = 0;
  netctl_addr_t addr;
  socklen_t addr_len = 0;
  uint32_t sent = 0, next = 0;
  int full = 0;
  while (next < count && !full) {
    int n = 0;
    for (; next < count && n < UDP_BATCH; next++) {
      const uint32_t *entry = index + (size_t)NETCTL_DATAGRAM_STRIDE * next;
      napi_value element;
      if (entry[NETCTL_DATAGRAM_BUFFER] != buffer_slot) {
        buffer_slot = entry[NETCTL_DATAGRAM_BUFFER];
        napi_get_element(env, argv[1], buffer_slot, &element);
        if (!netctl_get_bytes(env, element, &base, &base_len, "buffers must hold Uint8Arrays")) return NULL;
      }
      if (entry[NETCTL_DATAGRAM_ADDRESS] != address_slot) {
        address_slot = entry[NETCTL_DATAGRAM_ADDRESS];
        char text[INET6_ADDRSTRLEN + 1];
        size_t text_len;
        napi_get_element(env, argv[3], address_slot, &element);
        if (!netctl_get_string(env, element, text, sizeof text, &text_len, "addresses must hold strings")) return NULL;
        addr_len = text_len >= INET6_ADDRSTRLEN ? 0 : netctl_parse_address(udp->family, text, 0, &addr);
      }
      uint32_t offset = entry[NETCTL_DATAGRAM_OFFSET], len = entry[NETCTL_DATAGRAM_LENGTH], port = entry[NETCTL_DATAGRAM_PORT];
      if (addr_len == 0 || port == 0 || port > 65535 || offset > base_len || len > base_len - offset) continue;
      set_datagram(udp, n++, &addr, addr_len, (uint16_t)port, base + offset, len);
    }
    int rc = send_datagrams(udp, n, &sent, &full);
    if (rc != 0) return netctl_throw_errno(env, -rc, "sendmmsg", NULL);
  }
  napi_value result;
  napi_create_uint32(env, sent, &result);
  return result;
}

/* Sends one datagram with sendmsg: counts it in *sent, or sets *full when the queue is full. */
static void send_one(udp_t *udp, struct msghdr *hdr, uint32_t *sent, int *full) {
  ssize_t w;
  do {
    w = sendmsg(udp->poller.fd, hdr, 0);
  } while (w < 0 && errno == EINTR);
  if (w >= 0) (*sent)++;
  else if (errno == EAGAIN || errno == ENOBUFS) *full = 1;
}

/* Sends udp->msgs[0..n) (message i carries udp->send_segments[i] datagrams): adds to *sent how many
 * datagrams went, sets *full when the queue filled. A segmented message the kernel refuses (the path
 * MTU is smaller than a segment) is sent one datagram (an iovec pair: headers, payload; or a sealed
 * datagram's stretch of its one iovec) at a time. */
static int flush_frames(udp_t *udp, int n, uint32_t *sent, int *full) {
  int done = 0;
  while (done < n && !*full) {
    int r = sendmmsg(udp->poller.fd, udp->msgs + done, (unsigned int)(n - done), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
      *full = 1;
      break;
    }
    if (r < 0 && is_socket_error(errno)) return -errno;
    if (r < 0) {
      /* This message failed: retry it without segmentation, else drop it. */
      struct msghdr *hdr = &udp->msgs[done].msg_hdr;
      uint32_t sealed_len = udp->send_sealed[done];
      if (hdr->msg_control != NULL && sealed_len != 0) {
        struct iovec whole = hdr->msg_iov[0], one;
        hdr->msg_control = NULL;
        hdr->msg_controllen = 0;
        hdr->msg_iov = &one;
        hdr->msg_iovlen = 1;
        for (size_t at = 0; at < whole.iov_len && !*full; at += sealed_len) {
          one.iov_base = (uint8_t *)whole.iov_base + at;
          one.iov_len = whole.iov_len - at < sealed_len ? whole.iov_len - at : sealed_len;
          send_one(udp, hdr, sent, full);
        }
      } else if (hdr->msg_control != NULL) {
        struct iovec *iov = hdr->msg_iov;
        size_t iov_count = hdr->msg_iovlen;
        hdr->msg_control = NULL;
        hdr->msg_controllen = 0;
        hdr->msg_iovlen = 2;
        for (size_t i = 0; i + 1 < iov_count && !*full; i += 2) {
          hdr->msg_iov = iov + i;
          send_one(udp, hdr, sent, full);
        }
      }
      done++;
      continue;
    }
    for (int i = done; i < done + r; i++) *sent += udp->send_segments[i];
    done += r;
  }
  return 0;
}

#define SEAL_FAILED (-4)

/*
 * Seals the frames `frame` stands for with `sa` into `out` (`cap` bytes),
 * back to back: with `vnet_hdr` a TCP super-frame's segments, each on its
 * own (headers and payload gathered, never copied first), any other frame
 * with its partial checksum completed; without, the frame as it is. The
 * plaintext is the inner frame alone and its checksums are complete: no
 * RCO, which would leave the receiver a checksum to finish on bytes ESP
 * vouched for but the sender never summed. Every datagram but the last is
 * *segment_len bytes, the last no longer (frames of equal length seal to
 * equal lengths), as UDP_SEGMENT requires; *total_len in all. Returns how
 * many; OFFLOAD_NO_ROOM, having sealed nothing, when they would not fit `cap`
 * or number more than `max_datagrams`; OFFLOAD_MALFORMED; SEAL_FAILED.
 */
static int seal_frame(udp_t *udp, esp_sa_t *sa, const uint8_t *frame, size_t len, bool vnet_hdr, uint8_t *out, size_t cap,
                      size_t max_datagrams, size_t *segment_len, size_t *total_len) {
  /* offload_segment* copy a prefix; ours is empty, and memcpy wants a pointer all the same. */
  static const uint8_t no_prefix[1];
  size_t sealed;
  if (max_datagrams == 0) return OFFLOAD_NO_ROOM;
  if (vnet_hdr) {
    size_t full, headers_len;
    int count = offload_segment_iov(frame, len, no_prefix, 0, false, udp->seal_headers, SEAL_HEADERS, udp->seal_iovs,
                                    2 * SEAL_MAX_SEGMENTS, &full, &headers_len);
    /* Out of scratch, not arena: more segments than a sealed send takes, which no flush would cure. */
    if (count == OFFLOAD_NO_ROOM || count == OFFLOAD_MALFORMED) return OFFLOAD_MALFORMED;
    if (count > 0) {
      const struct iovec *last = &udp->seal_iovs[2 * (count - 1)];
      size_t each = esp_sealed_len(full);
      size_t total = (size_t)(count - 1) * each + esp_sealed_len(last[0].iov_len + last[1].iov_len);
      if (total > cap || (size_t)count > max_datagrams) return OFFLOAD_NO_ROOM;
      size_t at = 0;
      for (int i = 0; i < count; i++, at += sealed)
        if (esp_seal_gather(sa, &udp->seal_iovs[2 * i], 2, out + at, cap - at, &sealed) != ESP_OK) return SEAL_FAILED;
      *segment_len = each;
      *total_len = total;
      return count;
    }
    /* No GSO: the frame is copied (its checksum completed) to where esp_seal takes a plaintext, and sealed there. */
    if (len < VNET_HDR_LEN || esp_sealed_len(len - VNET_HDR_LEN) > cap) return OFFLOAD_NO_ROOM;
    size_t frame_len, copied;
    int made = offload_segment(frame, len, no_prefix, 0, false, out + ESP_HEADER_LEN, cap - ESP_HEADER_LEN, &frame_len, &copied);
    if (made < 0) return made;
    if (esp_seal(sa, out, frame_len, cap, &sealed) != ESP_OK) return SEAL_FAILED;
  } else {
    struct iovec whole = {(void *)frame, len};
    if (esp_sealed_len(len) > cap) return OFFLOAD_NO_ROOM;
    if (esp_seal_gather(sa, &whole, 1, out, cap, &sealed) != ESP_OK) return SEAL_FAILED;
  }
  *segment_len = *total_len = sealed;
  return 1;
}

/*
 * udpSendFrames(handle, prefix, buffers, index, count, vnetHdr, address, port, remoteChecksum, result, spi?). Sends the frames of a FrameBatch (buffers, index, count; see
 * netctl_frame_batch_t) to one destination, each as `prefix` (the VXLAN header) then the
 * frame. With vnetHdr each frame starts with a virtio_net_hdr: TCP super-frames are cut into
 * gso_size segments and partial checksums completed (offload_segment), or with remoteChecksum
 * (the receiver is a netctl VTEP) TCP ones left partial and marked with RCO. The segments of a
 * frame leave in one sendmsg with UDP_SEGMENT, up to 64 of those per sendmmsg. result (a
 * Uint32Array of 3) gets how many datagrams the frames made, how many the kernel took, and the
 * esp_result_t that refused the call (NETCTL_SEND_RESULT_*); malformed frames make none.
 *
 * With an SPI (not 0) every datagram carries ESP instead of prefix and frame: the outbound SA
 * of the socket's table seals each segment's frame (seal_frame; remoteChecksum is ignored),
 * and the sealed segments of a frame still leave in one UDP_SEGMENT send. Without that SA, or
 * with fewer sequence numbers left than the frames make datagrams, nothing is sent and the
 * result says ESP_UNKNOWN_SPI or ESP_SEQUENCE_EXHAUSTED: never a frame in clear.
 */
/* Makes message n a UDP_SEGMENT send of `size`-byte datagrams. */
static void set_segment_size(udp_t *udp, int n, size_t size) {
  struct msghdr *hdr = &udp->msgs[n].msg_hdr;
  hdr->msg_control = udp->controls[n].buf;
  hdr->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
  struct cmsghdr *cmsg = CMSG_FIRSTHDR(hdr);
  cmsg->cmsg_level = SOL_UDP;
  cmsg->cmsg_type = UDP_SEGMENT;
  cmsg->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  uint16_t segment = (uint16_t)size;
  memcpy(CMSG_DATA(cmsg), &segment, sizeof segment);
}

/*
 * Sends frames[0..count) to `dest`, each as `prefix` (the VXLAN header) then
 * the frame, or sealed with `sa` (not NULL) instead: what udpSendFrames does
 * for JavaScript, and the fast path (flow.c) for frames it forwards itself.
 * Adds to *datagrams how many datagrams the frames made and to *sent how
 * many the kernel took. Returns 0, or -errno for an error of the whole
 * socket (or memory).
 */
int netctl_udp_send_frames(udp_t *udp, const uint8_t *prefix, size_t prefix_len, const offload_frame_t *frames, uint32_t count,
                           bool vnet_hdr, const netctl_addr_t *dest, socklen_t dest_len, bool remote_csum, esp_sa_t *sa,
                           uint32_t *datagrams_out, uint32_t *sent_out) {
  if (sa) remote_csum = false;
  const size_t arena_size = (size_t)UDP_BATCH * UDP_SLOT;
  if ((!udp->send_arena && !(udp->send_arena = malloc(arena_size))) ||
      (!udp->send_iovs && !(udp->send_iovs = malloc(SEND_IOVS * sizeof *udp->send_iovs))))
    return -ENOMEM;
  if (sa && ((!udp->seal_headers && !(udp->seal_headers = malloc(SEAL_HEADERS))) ||
             (!udp->seal_iovs && !(udp->seal_iovs = malloc(2 * SEAL_MAX_SEGMENTS * sizeof *udp->seal_iovs)))))
    return -ENOMEM;
  uint8_t *arena = udp->send_arena;
  struct iovec *iovs = udp->send_iovs;
  uint32_t datagrams = 0, sent = 0;
  int full = 0, n = 0, rc;
  /* Bytes of the arena and iovecs that messages not yet sent point into. */
  size_t used = 0, iovs_used = 0;
  /* The last message, while frames that make one datagram each (copied or sealed, back to back in the arena)
   * may join it as UDP_SEGMENT segments of run_len: one message for a burst of small frames, not one each. */
  int run = -1;
  size_t run_len = 0;
  for (uint32_t f = 0; f < count && !full; f++) {
    const uint8_t *bytes = frames[f].data;
    size_t size = frames[f].len;
    size_t segment_len, total;
    int segments;
    /* A super-frame's segments are iovec pairs (headers, payload by reference); other frames are copied whole;
     * sealed ones lie back to back in the arena, one iovec per message. */
    bool pairs;
    for (;;) {
      uint8_t *out = arena + used;
      pairs = false;
      segments = OFFLOAD_NOT_GSO;
      if (sa) {
        segments = seal_frame(udp, sa, bytes, size, vnet_hdr, out, arena_size - used, SEND_IOVS - iovs_used, &segment_len,
                              &total);
      } else {
        if (vnet_hdr) {
          segments = offload_segment_iov(bytes, size, prefix, prefix_len, remote_csum, out, arena_size - used, iovs + iovs_used,
                                         SEND_IOVS - iovs_used, &segment_len, &total);
          pairs = segments > 0;
        }
        if (segments == OFFLOAD_NOT_GSO && iovs_used == SEND_IOVS) {
          segments = OFFLOAD_NO_ROOM;
        } else if (segments == OFFLOAD_NOT_GSO && vnet_hdr) {
          segments = offload_segment(bytes, size, prefix, prefix_len, remote_csum, out, arena_size - used, &segment_len,
                                     &total);
        } else if (segments == OFFLOAD_NOT_GSO) {
          if (prefix_len + size <= arena_size - used) {
            memcpy(out, prefix, prefix_len);
            memcpy(out + prefix_len, bytes, size);
            segments = 1;
            segment_len = total = prefix_len + size;
          } else {
            segments = OFFLOAD_NO_ROOM;
          }
        }
      }
      if (segments != OFFLOAD_NO_ROOM || (used == 0 && iovs_used == 0)) break;
      if ((rc = flush_frames(udp, n, &sent, &full)) != 0) return rc;
      n = 0;
      used = 0;
      iovs_used = 0;
      run = -1;
      if (full) break;
    }
    if (full || segments < 0) continue;
    datagrams += (uint32_t)segments;
    if (segments == 1 && !pairs && run >= 0 && total <= run_len && udp->send_segments[run] < GSO_MAX_SEGMENTS &&
        udp->msgs[run].msg_hdr.msg_iov[0].iov_len + total <= GSO_MAX_PAYLOAD) {
      /* Right behind the run's last datagram in the arena: it joins the message; a shorter one ends the run. */
      struct msghdr *hdr = &udp->msgs[run].msg_hdr;
      hdr->msg_iov[0].iov_len += total;
      if (udp->send_segments[run]++ == 1) set_segment_size(udp, run, run_len);
      if (total < run_len) run = -1;
      used += total;
      continue;
    }
    run = -1;
    if (!pairs && !sa) {
      /* One datagram, copied: one iovec. */
      iovs[iovs_used].iov_base = arena + used;
      iovs[iovs_used].iov_len = total;
    }
    size_t per_message = GSO_MAX_PAYLOAD / segment_len;
    if (per_message > GSO_MAX_SEGMENTS) per_message = GSO_MAX_SEGMENTS;
    if (per_message == 0) per_message = 1;
    size_t messages = 0;
    for (size_t first = 0; first < (size_t)segments;) {
      if (n == UDP_BATCH) {
        if ((rc = flush_frames(udp, n, &sent, &full)) != 0) return rc;
        n = 0;
        run = -1;
        if (full) break;
      }
      size_t in_message = (size_t)segments - first < per_message ? (size_t)segments - first : per_message;
      udp->addrs[n] = *dest;
      struct msghdr *hdr = &udp->msgs[n].msg_hdr;
      memset(hdr, 0, sizeof *hdr);
      hdr->msg_name = &udp->addrs[n];
      hdr->msg_namelen = dest_len;
      if (sa) {
        /* This message's sealed datagrams: all of segment_len but perhaps the frame's last. */
        struct iovec *iov = iovs + iovs_used + messages++;
        iov->iov_base = arena + used + first * segment_len;
        iov->iov_len = first + in_message < (size_t)segments ? in_message * segment_len : total - first * segment_len;
        hdr->msg_iov = iov;
        hdr->msg_iovlen = 1;
      } else {
        hdr->msg_iov = iovs + iovs_used + (pairs ? 2 * first : 0);
        hdr->msg_iovlen = pairs ? 2 * in_message : 1;
      }
      udp->send_segments[n] = (uint32_t)in_message;
      /* One datagram, copied or sealed: later ones of its length may join it (above). */
      bool single = segments == 1 && !pairs;
      udp->send_sealed[n] = sa || single ? (uint32_t)segment_len : 0;
      if (single) {
        run = n;
        run_len = segment_len;
      }
      if (in_message > 1) set_segment_size(udp, n, segment_len);
      n++;
      first += in_message;
    }
    used += total;
    iovs_used += pairs ? 2 * (size_t)segments : sa ? messages : 1;
  }
  if (!full && n > 0 && (rc = flush_frames(udp, n, &sent, &full)) != 0) return rc;
  *datagrams_out += datagrams;
  *sent_out += sent;
  return 0;
}

static napi_value udp_send_frames(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage =
      "udpSendFrames(handle, prefix: Uint8Array, buffers: Uint8Array[], index: Uint32Array, count: number, "
      "vnetHdr: boolean, address: string, port: number, remoteChecksum: boolean, result: Uint32Array, spi?: number)";
  if (argc < 10) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  udp_t *udp = get_udp(env, argv[0], true);
  if (!udp) return NULL;
  uint8_t *prefix;
  size_t prefix_len;
  bool vnet_hdr, remote_csum;
  uint32_t port, spi;
  char text[INET6_ADDRSTRLEN + 1];
  size_t text_len;
  netctl_frame_batch_t batch;
  size_t result_len = 0;
  uint32_t *result = NULL;
  if (!netctl_get_bytes(env, argv[1], &prefix, &prefix_len, usage)) return NULL;
  if (!netctl_frame_batch_open(env, argv[2], argv[3], argv[4], &batch)) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  if (!netctl_get_bool(env, argv[5], &vnet_hdr, usage) || !netctl_get_string(env, argv[6], text, sizeof text, &text_len, usage) ||
      !netctl_get_uint32(env, argv[7], &port, usage) || !netctl_get_bool(env, argv[8], &remote_csum, usage) ||
      !get_spi(env, argc, argv, 10, &spi, usage))
    return NULL;
  if (!netctl_typed_array(env, argv[9], napi_uint32_array, (void **)&result, &result_len) ||
      result_len < NETCTL_SEND_RESULT_LENGTH) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  uint32_t count = batch.count;
  result[NETCTL_SEND_RESULT_DATAGRAMS] = 0;
  result[NETCTL_SEND_RESULT_SENT] = 0;
  result[NETCTL_SEND_RESULT_REFUSED] = ESP_OK;
  esp_sa_t *sa = NULL;
  if (spi != 0) {
    esp_result_t refused = outbound_sa(udp, spi, &sa);
    if (refused == ESP_OK && sequence_left(sa) < SEQUENCE_PLENTY) {
      /* Near the end of the sequence space: count what the frames make, so that the call is all or nothing. */
      uint64_t needed = 0;
      for (uint32_t f = 0; f < count; f++) {
        uint8_t *bytes;
        size_t size;
        if (!netctl_frame_batch_get(env, &batch, f, &bytes, &size)) return NULL;
        long made = vnet_hdr ? offload_segment_count(bytes, size) : 1;
        if (made > 0) needed += (uint64_t)made;
      }
      if (needed > sequence_left(sa)) refused = ESP_SEQUENCE_EXHAUSTED;
    }
    if (refused != ESP_OK) {
      result[NETCTL_SEND_RESULT_REFUSED] = refused;
      return NULL;
    }
  }
  netctl_addr_t dest;
  socklen_t dest_len = port == 0 || port > 65535 || text_len >= INET6_ADDRSTRLEN ? 0 : netctl_parse_address(udp->family, text, (uint16_t)port, &dest);
  if (dest_len == 0) return NULL;
  if (count > udp->send_frames_cap) {
    offload_frame_t *grown = realloc(udp->send_frames, count * sizeof *grown);
    if (!grown) return netctl_throw_errno(env, ENOMEM, "realloc", NULL);
    udp->send_frames = grown;
    udp->send_frames_cap = count;
  }
  for (uint32_t f = 0; f < count; f++) {
    uint8_t *bytes;
    size_t size;
    if (!netctl_frame_batch_get(env, &batch, f, &bytes, &size)) return NULL;
    udp->send_frames[f].data = bytes;
    udp->send_frames[f].len = size;
  }
  uint32_t datagrams = 0, sent = 0;
  int rc = netctl_udp_send_frames(udp, prefix, prefix_len, udp->send_frames, count, vnet_hdr, &dest, dest_len, remote_csum, sa,
                                  &datagrams, &sent);
  if (rc != 0) return netctl_throw_errno(env, -rc, rc == -ENOMEM ? "malloc" : "sendmmsg", NULL);
  result[NETCTL_SEND_RESULT_DATAGRAMS] = datagrams;
  result[NETCTL_SEND_RESULT_SENT] = sent;
  return NULL;
}

/* udpSetEspTable(handle, table | null): attaches an ESP table (esp_napi.c) to the socket, replacing
 * any other, or detaches it. The socket holds the table until it is detached or the socket closed,
 * whichever order JavaScript closes them in (esp_handle.h). With a table, received ESP datagrams are
 * opened (open_datagrams) and sends may name an outbound SPI. */
static napi_value udp_set_esp_table(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "udpSetEspTable(handle, table: ESP table handle | null)");
    return NULL;
  }
  udp_t *udp = get_udp(env, argv[0], true);
  if (!udp) return NULL;
  napi_valuetype type;
  napi_typeof(env, argv[1], &type);
  netctl_esp_handle_t *esp = NULL;
  if (type != napi_null && type != napi_undefined) {
    if (!(esp = netctl_esp_handle_get(env, argv[1]))) return NULL;
    /* Held before the old one is let go, so attaching the same table again never frees it. */
    netctl_esp_handle_hold(esp);
  }
  detach_table(udp);
  udp->esp = esp;
  return NULL;
}

/* udpClose(handle): stops polling, closes the fd and lets go of the ESP table; later calls throw. */
static napi_value udp_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  udp_t *udp = argc < 1 ? NULL : get_udp(env, argv[0], false);
  if (!udp) return NULL;
  netctl_poller_close(&udp->poller);
  detach_table(udp);
  if (udp->flows) netctl_flow_close(udp->flows);
  return NULL;
}

napi_status netctl_register_udp(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"udpOpen", NULL, udp_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpStart", NULL, udp_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpStop", NULL, udp_stop, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpSendBatch", NULL, udp_send_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpSendIndexed", NULL, udp_send_indexed, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpSendFrames", NULL, udp_send_frames, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpSetEspTable", NULL, udp_set_esp_table, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpOpenDatagrams", NULL, udp_open_datagrams, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpClose", NULL, udp_close, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
