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

typedef struct {
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

static void release_udp(netctl_poller_t *poller) {
  udp_t *udp = (udp_t *)poller;
  free(udp->send_arena);
  free(udp->send_iovs);
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

/* Calls onBatch(count) with what `received` holds, and starts it afresh. */
static void deliver(udp_t *udp, received_t *received) {
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

static void on_readable(netctl_poller_t *poller) {
  udp_t *udp = (udp_t *)poller;
  napi_env env = poller->env;
  received_t received = {0};
  /* batch[0]: the index, batch[1]: the buffers, batch[2]: the addresses. */
  napi_value batch[3];
  size_t index_len = 0;
  if (!netctl_started_batch(env, &poller->started, batch, 3, &received.index, &index_len) ||
      index_len < (size_t)NETCTL_DATAGRAM_STRIDE * NETCTL_DATAGRAM_MAX)
    return;
  received.buffers = batch[1];
  received.addresses = batch[2];
  for (int round = 0; round < UDP_ROUNDS && !poller->closed && poller->polling; round++) {
    prepare_receive(udp);
    int n = recvmmsg(poller->fd, udp->msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      /* EAGAIN: drained. Other errors (a pending ICMP error): deliver what
       * was read; the poll reports the socket again if it persists. */
      break;
    }
    uint32_t buffer = 0;
    uint8_t *copy = NULL;
    if (!poller->borrowed) {
      /* The callee may keep these: this round's payloads back to back in a fresh Buffer. */
      size_t total = 0;
      for (int i = 0; i < n; i++) total += udp->msgs[i].msg_len;
      napi_value fresh;
      if (napi_create_buffer(env, total, (void **)&copy, &fresh) != napi_ok) break;
      buffer = received.buffer_count++;
      napi_set_element(env, received.buffers, buffer, fresh);
    }
    size_t offset = 0;
    for (int i = 0; i < n; i++) {
      size_t len = udp->msgs[i].msg_len;
      uint32_t *entry = received.index + (size_t)NETCTL_DATAGRAM_STRIDE * received.count;
      entry[NETCTL_DATAGRAM_BUFFER] = buffer;
      if (copy) {
        memcpy(copy + offset, udp->iovs[i].iov_base, len);
        entry[NETCTL_DATAGRAM_OFFSET] = (uint32_t)offset;
        offset += len;
      } else {
        entry[NETCTL_DATAGRAM_OFFSET] = (uint32_t)((size_t)i * UDP_SLOT);
      }
      entry[NETCTL_DATAGRAM_LENGTH] = (uint32_t)len;
      uint32_t size = udp->gro ? gro_segment_size(&udp->msgs[i].msg_hdr) : 0;
      entry[NETCTL_DATAGRAM_SEGMENT_SIZE] = size >= len ? 0 : size;
      const netctl_addr_t *from = &udp->addrs[i];
      entry[NETCTL_DATAGRAM_PORT] = ntohs(from->sa.sa_family == AF_INET ? from->in4.sin_port : from->in6.sin6_port);
      entry[NETCTL_DATAGRAM_ADDRESS] = address_slot(env, &received, from);
      received.count++;
    }
    /* Borrowed memory is overwritten by the next recvmmsg: hand each round over before it. */
    if (poller->borrowed && received.count > 0) deliver(udp, &received);
    if (n < UDP_BATCH) break;
  }
  if (received.count > 0) deliver(udp, &received);
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

/* udpSendBatch(handle, { data, addresses, ports }) -> number sent. One
 * sendmmsg per UDP_BATCH datagrams. Stops when the socket's queue is full
 * (EAGAIN, ENOBUFS); a datagram that cannot be sent (unparseable or
 * unreachable address, too long) is skipped; socket-level errors throw. */
static napi_value udp_send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "udpSendBatch(handle, { data, addresses, ports })");
    return NULL;
  }
  udp_t *udp = get_udp(env, argv[0], true);
  if (!udp) return NULL;
  napi_value data, addresses, ports;
  uint32_t count, address_count, port_count;
  if (get_array(env, argv[1], "data", &data, &count) != 0 ||
      get_array(env, argv[1], "addresses", &addresses, &address_count) != 0 ||
      get_array(env, argv[1], "ports", &ports, &port_count) != 0 || address_count < count || port_count < count) {
    napi_throw_type_error(env, NULL, "expected { data: Uint8Array[], addresses: string[], ports: number[] } of one length");
    return NULL;
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
      udp->addrs[n] = last_addr;
      if (udp->family == AF_INET)
        udp->addrs[n].in4.sin_port = htons((uint16_t)port);
      else
        udp->addrs[n].in6.sin6_port = htons((uint16_t)port);
      udp->iovs[n].iov_base = bytes;
      udp->iovs[n].iov_len = size;
      struct msghdr *hdr = &udp->msgs[n].msg_hdr;
      memset(hdr, 0, sizeof *hdr);
      hdr->msg_name = &udp->addrs[n];
      hdr->msg_namelen = last_len;
      hdr->msg_iov = &udp->iovs[n];
      hdr->msg_iovlen = 1;
      n++;
    }
    int done = 0;
    while (done < n) {
      int r = sendmmsg(udp->poller.fd, udp->msgs + done, (unsigned int)(n - done), 0);
      if (r > 0) {
        done += r;
        sent += (uint32_t)r;
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
        full = 1;
        break;
      }
      if (r < 0 && is_socket_error(errno)) return netctl_throw_errno(env, errno, "sendmmsg", NULL);
      /* This datagram's destination failed; the rest may still go. */
      done++;
    }
  }
  napi_value result;
  napi_create_uint32(env, sent, &result);
  return result;
}

/* Sends udp->msgs[0..n) (message i carries udp->send_segments[i] datagrams): adds to *sent how many
 * datagrams went, sets *full when the queue filled. A segmented message the kernel refuses (the path
 * MTU is smaller than a segment) is sent one datagram (an iovec pair: headers, payload) at a time. */
static int flush_frames(napi_env env, udp_t *udp, int n, uint32_t *sent, int *full) {
  int done = 0;
  while (done < n && !*full) {
    int r = sendmmsg(udp->poller.fd, udp->msgs + done, (unsigned int)(n - done), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
      *full = 1;
      break;
    }
    if (r < 0 && is_socket_error(errno)) {
      netctl_throw_errno(env, errno, "sendmmsg", NULL);
      return -1;
    }
    if (r < 0) {
      /* This message failed: retry it without segmentation, else drop it. */
      struct msghdr *hdr = &udp->msgs[done].msg_hdr;
      if (hdr->msg_control != NULL) {
        struct iovec *iov = hdr->msg_iov;
        size_t iov_count = hdr->msg_iovlen;
        hdr->msg_control = NULL;
        hdr->msg_controllen = 0;
        hdr->msg_iovlen = 2;
        for (size_t i = 0; i + 1 < iov_count && !*full; i += 2) {
          hdr->msg_iov = iov + i;
          ssize_t w;
          do {
            w = sendmsg(udp->poller.fd, hdr, 0);
          } while (w < 0 && errno == EINTR);
          if (w >= 0) (*sent)++;
          else if (errno == EAGAIN || errno == ENOBUFS) *full = 1;
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

/*
 * udpSendFrames(handle, prefix, buffers, index, count, vnetHdr, address, port, remoteChecksum, result). Sends the frames of a FrameBatch (buffers, index, count; see
 * netctl_frame_batch_t) to one destination, each as `prefix` (the VXLAN header) then the
 * frame. With vnetHdr each frame starts with a virtio_net_hdr: TCP super-frames are cut into
 * gso_size segments and partial checksums completed (offload_segment), or with remoteChecksum
 * (the receiver is a netctl VTEP) TCP ones left partial and marked with RCO. The segments of a
 * frame leave in one sendmsg with UDP_SEGMENT, up to 64 of those per sendmmsg. result (a
 * Uint32Array of 2) gets how many datagrams the frames made, then how many the kernel took;
 * malformed frames make none (NETCTL_SEND_RESULT_*).
 */
static napi_value udp_send_frames(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage =
      "udpSendFrames(handle, prefix: Uint8Array, buffers: Uint8Array[], index: Uint32Array, count: number, "
      "vnetHdr: boolean, address: string, port: number, remoteChecksum: boolean, result: Uint32Array)";
  if (argc < 10) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  udp_t *udp = get_udp(env, argv[0], true);
  if (!udp) return NULL;
  uint8_t *prefix;
  size_t prefix_len;
  bool vnet_hdr, remote_csum;
  uint32_t port;
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
      !netctl_get_uint32(env, argv[7], &port, usage) || !netctl_get_bool(env, argv[8], &remote_csum, usage))
    return NULL;
  if (!netctl_typed_array(env, argv[9], napi_uint32_array, (void **)&result, &result_len) ||
      result_len < NETCTL_SEND_RESULT_LENGTH) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  uint32_t count = batch.count;
  const size_t arena_size = (size_t)UDP_BATCH * UDP_SLOT;
  if (!udp->send_arena && !(udp->send_arena = malloc(arena_size))) return netctl_throw_errno(env, ENOMEM, "malloc", NULL);
  if (!udp->send_iovs && !(udp->send_iovs = malloc(SEND_IOVS * sizeof *udp->send_iovs)))
    return netctl_throw_errno(env, ENOMEM, "malloc", NULL);
  uint8_t *arena = udp->send_arena;
  struct iovec *iovs = udp->send_iovs;
  uint32_t datagrams = 0, sent = 0;
  netctl_addr_t dest;
  socklen_t dest_len = port == 0 || port > 65535 || text_len >= INET6_ADDRSTRLEN ? 0 : netctl_parse_address(udp->family, text, (uint16_t)port, &dest);
  int full = 0, n = 0;
  /* Bytes of the arena and iovecs that messages not yet sent point into. */
  size_t used = 0, iovs_used = 0;
  for (uint32_t f = 0; f < count && dest_len != 0 && !full; f++) {
    uint8_t *bytes;
    size_t size;
    if (!netctl_frame_batch_get(env, &batch, f, &bytes, &size)) return NULL;
    size_t segment_len, total;
    int segments;
    /* A super-frame's segments are iovec pairs (headers, payload by reference); other frames are copied whole. */
    bool pairs;
    for (;;) {
      uint8_t *out = arena + used;
      pairs = false;
      segments = OFFLOAD_NOT_GSO;
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
      if (segments != OFFLOAD_NO_ROOM || (used == 0 && iovs_used == 0)) break;
      if (flush_frames(env, udp, n, &sent, &full) != 0) return NULL;
      n = 0;
      used = 0;
      iovs_used = 0;
      if (full) break;
    }
    if (full || segments < 0) continue;
    datagrams += (uint32_t)segments;
    if (!pairs) {
      /* One datagram, copied: one iovec. */
      iovs[iovs_used].iov_base = arena + used;
      iovs[iovs_used].iov_len = total;
    }
    size_t per_message = GSO_MAX_PAYLOAD / segment_len;
    if (per_message > GSO_MAX_SEGMENTS) per_message = GSO_MAX_SEGMENTS;
    if (per_message == 0) per_message = 1;
    for (size_t first = 0; first < (size_t)segments;) {
      if (n == UDP_BATCH) {
        if (flush_frames(env, udp, n, &sent, &full) != 0) return NULL;
        n = 0;
        if (full) break;
      }
      size_t in_message = (size_t)segments - first < per_message ? (size_t)segments - first : per_message;
      udp->addrs[n] = dest;
      struct msghdr *hdr = &udp->msgs[n].msg_hdr;
      memset(hdr, 0, sizeof *hdr);
      hdr->msg_name = &udp->addrs[n];
      hdr->msg_namelen = dest_len;
      hdr->msg_iov = iovs + iovs_used + (pairs ? 2 * first : 0);
      hdr->msg_iovlen = pairs ? 2 * in_message : 1;
      udp->send_segments[n] = (uint32_t)in_message;
      if (in_message > 1) {
        hdr->msg_control = udp->controls[n].buf;
        hdr->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(hdr);
        cmsg->cmsg_level = SOL_UDP;
        cmsg->cmsg_type = UDP_SEGMENT;
        cmsg->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t segment = (uint16_t)segment_len;
        memcpy(CMSG_DATA(cmsg), &segment, sizeof segment);
      }
      n++;
      first += in_message;
    }
    used += total;
    iovs_used += pairs ? 2 * (size_t)segments : 1;
  }
  if (!full && n > 0 && flush_frames(env, udp, n, &sent, &full) != 0) return NULL;
  result[NETCTL_SEND_RESULT_DATAGRAMS] = datagrams;
  result[NETCTL_SEND_RESULT_SENT] = sent;
  return NULL;
}

/* udpClose(handle): stops polling and closes the fd; later calls throw. */
static napi_value udp_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  udp_t *udp = argc < 1 ? NULL : get_udp(env, argv[0], false);
  if (!udp) return NULL;
  netctl_poller_close(&udp->poller);
  return NULL;
}

napi_status netctl_register_udp(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"udpOpen", NULL, udp_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpStart", NULL, udp_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpStop", NULL, udp_stop, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpSendBatch", NULL, udp_send_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpSendFrames", NULL, udp_send_frames, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpClose", NULL, udp_close, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
