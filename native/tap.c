/*
 * TAP devices: open (TUNSETIFF, TUNSETOFFLOAD) and batched, event-driven I/O.
 * A uv_poll watches the fd; each wake-up reads up to TAP_BATCH frames and
 * hands them to JavaScript in one call, so the cost of crossing into JS is
 * paid per batch, not per frame.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/if_tun.h>
#include <uv.h>

#include "addon.h"
#include "batch_layout.h"
#include "flow.h"
#include "offload.h"
#include "poller.h"

#define TAP_BATCH NETCTL_TAP_BATCH
/* A 64 KB GSO segment plus the virtio-net header in front of it. */
#define TAP_READ_SIZE (65536 + 64)

typedef struct tap {
  /* First, so that a tap_t is its poller. The arena: TAP_BATCH slots of TAP_READ_SIZE that frames are read into. */
  netctl_poller_t poller;
  int vnet_hdr; /* frames carry a virtio_net_hdr (IFF_VNET_HDR) */
  /* The frames of one tapWriteFrames call, grown as needed. */
  offload_frame_t *frames;
  size_t frames_cap;
  /* Its network in the underlay's fast path (flow.c), while attached. */
  flow_network_t *flow;
} tap_t;

static void on_readable(netctl_poller_t *poller);
static void release_tap(netctl_poller_t *poller);

static const netctl_poller_kind_t tap_kind = {
    .resource_name = "netctl:TapDevice",
    .not_a_handle = "expected a TAP handle",
    .closed_code = "ERR_TAP_CLOSED",
    .closed_message = "TAP device is closed",
    .on_readable = on_readable,
    .release = release_tap,
};

/* tapOpen(name, vnetHdr, offloads) -> { fd, name }. Opens the device in the
 * calling thread's network namespace; offloads < 0 means "leave as is". */
static napi_value tap_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char name[IFNAMSIZ + 1];
  size_t name_len;
  bool vnet_hdr;
  int32_t offloads;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage = "tapOpen(name: string, vnetHdr: boolean, offloads: number)";
  if (argc < 3) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  if (!netctl_get_string(env, argv[0], name, sizeof name, &name_len, usage) ||
      !netctl_get_bool(env, argv[1], &vnet_hdr, usage) || !netctl_get_int32(env, argv[2], &offloads, usage))
    return NULL;
  if (name_len >= IFNAMSIZ) {
    napi_throw_range_error(env, NULL, "interface name longer than 15 bytes");
    return NULL;
  }

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return netctl_throw_errno(env, errno, "open", "/dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
  memcpy(ifr.ifr_name, name, name_len);
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
    int err = errno;
    close(fd);
    return netctl_throw_errno(env, err, "TUNSETIFF", name);
  }
  if (offloads >= 0 && ioctl(fd, TUNSETOFFLOAD, (unsigned int)offloads) != 0) {
    int err = errno;
    close(fd);
    return netctl_throw_errno(env, err, "TUNSETOFFLOAD", name);
  }

  napi_value result, fd_value, name_value;
  napi_create_object(env, &result);
  napi_create_int32(env, fd, &fd_value);
  napi_create_string_utf8(env, ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ), &name_value);
  napi_set_named_property(env, result, "fd", fd_value);
  napi_set_named_property(env, result, "name", name_value);
  return result;
}

static tap_t *get_tap(napi_env env, napi_value value, bool open) {
  return (tap_t *)netctl_poller_get(env, value, &tap_kind, open);
}

tap_t *netctl_tap_get(napi_env env, napi_value value) { return get_tap(env, value, true); }

bool netctl_tap_vnet_hdr(const tap_t *tap) { return tap->vnet_hdr; }

flow_network_t *netctl_tap_flow(const tap_t *tap) { return tap->flow; }

void netctl_tap_set_flow(tap_t *tap, flow_network_t *network) { tap->flow = network; }

static void release_tap(netctl_poller_t *poller) {
  tap_t *tap = (tap_t *)poller;
  free(tap->frames);
  free(tap);
}

/* tapHandle(fd, vnetHdr, borrowBuffers) -> handle: takes ownership of fd for polling and closing.
 * With borrowBuffers, frames delivered are in the handle's own memory, valid until the callback
 * returns; else in a fresh Buffer per batch. */
static napi_value tap_handle(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  bool vnet_hdr, borrow;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage = "tapHandle(fd: number, vnetHdr: boolean, borrowBuffers: boolean)";
  if (argc < 3) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  if (!netctl_get_int32(env, argv[0], &fd, usage) || !netctl_get_bool(env, argv[1], &vnet_hdr, usage) ||
      !netctl_get_bool(env, argv[2], &borrow, usage))
    return NULL;
  tap_t *tap = calloc(1, sizeof *tap);
  uint8_t *arena = malloc((size_t)TAP_BATCH * TAP_READ_SIZE);
  if (!tap || !arena) {
    free(tap);
    free(arena);
    return netctl_throw_errno(env, ENOMEM, "malloc", NULL);
  }
  tap->vnet_hdr = vnet_hdr;
  napi_value handle = netctl_poller_open(env, &tap->poller, &tap_kind, fd, arena, (size_t)TAP_BATCH * TAP_READ_SIZE, borrow);
  if (!handle) {
    free(arena);
    free(tap);
  }
  return handle;
}

static void on_readable(netctl_poller_t *poller) {
  tap_t *tap = (tap_t *)poller;
  napi_env env = poller->env;
  uint32_t count = 0;
  size_t lengths[TAP_BATCH];
  while (count < TAP_BATCH) {
    ssize_t n = read(poller->fd, poller->arena + (size_t)count * TAP_READ_SIZE, TAP_READ_SIZE);
    if (n < 0) {
      if (errno == EINTR) continue;
      /* EAGAIN: drained. Other errors (the device went away): deliver what
       * was read; the poll reports the condition again if it persists. */
      break;
    }
    if (n == 0) break;
    lengths[count++] = (size_t)n;
  }
  /* The fast path sends what it can; JavaScript gets the rest. */
  bool taken[TAP_BATCH];
  uint32_t delivered = count;
  if (count > 0 && tap->flow) delivered -= netctl_flow_from_tap(tap->flow, poller->arena, TAP_READ_SIZE, lengths, count, taken);
  else memset(taken, 0, sizeof taken);
  /* batch[0]: the index, batch[1]: the buffers. */
  napi_value batch[2];
  uint32_t *index;
  size_t index_len;
  if (delivered > 0 && netctl_started_batch(env, &poller->started, batch, 2, &index, &index_len) &&
      index_len >= (size_t)NETCTL_FRAME_STRIDE * delivered) {
    napi_value buffers = batch[1];
    if (poller->borrowed) {
      for (uint32_t i = 0, at = 0; i < count; i++) {
        if (taken[i]) continue;
        uint32_t *entry = index + (size_t)NETCTL_FRAME_STRIDE * at++;
        entry[NETCTL_FRAME_BUFFER] = 0;
        entry[NETCTL_FRAME_OFFSET] = i * TAP_READ_SIZE;
        entry[NETCTL_FRAME_LENGTH] = (uint32_t)lengths[i];
      }
    } else {
      /* The callee may keep these: one fresh Buffer with the frames back to back. */
      size_t total = 0;
      for (uint32_t i = 0; i < count; i++)
        if (!taken[i]) total += lengths[i];
      napi_value buffer;
      uint8_t *bytes;
      napi_create_buffer(env, total, (void **)&bytes, &buffer);
      napi_set_element(env, buffers, 0, buffer);
      size_t offset = 0;
      for (uint32_t i = 0, at = 0; i < count; i++) {
        if (taken[i]) continue;
        memcpy(bytes + offset, poller->arena + (size_t)i * TAP_READ_SIZE, lengths[i]);
        uint32_t *entry = index + (size_t)NETCTL_FRAME_STRIDE * at++;
        entry[NETCTL_FRAME_BUFFER] = 0;
        entry[NETCTL_FRAME_OFFSET] = (uint32_t)offset;
        entry[NETCTL_FRAME_LENGTH] = (uint32_t)lengths[i];
        offset += lengths[i];
      }
    }
    netctl_poller_deliver(poller, delivered);
  }
}

/* tapStart(handle, onBatch, index, buffers): calls onBatch(count) for every wake-up with data,
 * having filled index (a Uint32Array of at least NETCTL_FRAME_STRIDE * TAP_BATCH) and buffers as a FrameBatch of count
 * frames (src/sys/tap.ts): buffers[0] is the handle's memory when it borrows buffers, valid
 * until onBatch returns, else a fresh Buffer per call. */
static napi_value tap_start(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage = "tapStart(handle, onBatch: (count: number) => void, index: Uint32Array, buffers: Uint8Array[])";
  if (argc < 4) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  tap_t *tap = get_tap(env, argv[0], true);
  if (!tap) return NULL;
  netctl_poller_start(env, &tap->poller, argv[0], argv[1], argv + 2, 2, (size_t)NETCTL_FRAME_STRIDE * TAP_BATCH, usage);
  return NULL;
}

/* tapStop(handle): stops delivering frames; the kernel queues (then drops) them. */
static napi_value tap_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  tap_t *tap = argc < 1 ? NULL : get_tap(env, argv[0], true);
  if (!tap) return NULL;
  netctl_poller_stop(&tap->poller);
  return NULL;
}

/* tapWriteBatch(handle, frames) -> number written. Stops at the first frame
 * the kernel cannot take now (EAGAIN); other errors throw. */
static napi_value tap_write_batch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "tapWriteBatch(handle, frames)");
    return NULL;
  }
  tap_t *tap = get_tap(env, argv[0], true);
  if (!tap) return NULL;
  bool is_array;
  napi_is_array(env, argv[1], &is_array);
  if (!is_array) {
    napi_throw_type_error(env, NULL, "frames must be an array of Buffers");
    return NULL;
  }
  uint32_t length;
  napi_get_array_length(env, argv[1], &length);
  uint32_t written = 0;
  for (; written < length; written++) {
    napi_value frame;
    uint8_t *data;
    size_t size;
    napi_get_element(env, argv[1], written, &frame);
    if (!netctl_get_bytes(env, frame, &data, &size, "frames must be an array of Buffers")) return NULL;
    ssize_t n;
    do {
      n = write(tap->poller.fd, data, size);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN) break;
      return netctl_throw_errno(env, errno, "write", "TAP");
    }
  }
  napi_value result;
  napi_create_uint32(env, written, &result);
  return result;
}

/*
 * Writes frames[0..count) (plain Ethernet frames) to the TAP, as
 * tapWriteFrames describes; sets *written_out. Returns 0, or -errno for an
 * error other than a full queue or a frame the kernel rejects. Shared with
 * the fast path (flow.c). Completing a partial checksum writes into a frame.
 */
int netctl_tap_write_frames(tap_t *tap, offload_frame_t *frames, uint32_t count, uint32_t *written_out) {
  uint8_t scratch[COALESCE_SCRATCH];
  struct iovec iov[COALESCE_MAX_SEGMENTS + 1];
  uint32_t written = 0;
  for (uint32_t done = 0; done < count;) {
    size_t taken;
    ssize_t n;
    if (tap->vnet_hdr) {
      int iov_count;
      taken = offload_coalesce_next(frames + done, count - done, scratch, iov, &iov_count);
      do {
        n = writev(tap->poller.fd, iov, iov_count);
      } while (n < 0 && errno == EINTR);
    } else {
      taken = 1;
      offload_frame_t *frame = &frames[done];
      if (frame->checksum >= OFFLOAD_CSUM_PARTIAL_MIN &&
          !offload_complete_partial((uint8_t *)frame->data, frame->len, frame->checksum)) {
        done++;
        continue;
      }
      do {
        n = write(tap->poller.fd, frame->data, frame->len);
      } while (n < 0 && errno == EINTR);
    }
    if (n < 0) {
      if (errno == EAGAIN) break;
      if (errno != EINVAL) {
        *written_out = written;
        return -errno;
      }
    } else {
      written += (uint32_t)taken;
    }
    done += (uint32_t)taken;
  }
  *written_out = written;
  return 0;
}

/*
 * tapWriteFrames(handle, buffers, index, count, checksum?) -> frames written.
 * The frames (a FrameBatch, see netctl_frame_batch_t) are plain Ethernet frames. On a device with IFF_VNET_HDR each write gets a
 * virtio_net_hdr, and consecutive segments of one TCP flow go as one
 * super-frame (one writev). checksum[i] is frame i's offload_frame_t.checksum
 * (default unverified): a trusted one is not checked before merging, a
 * partial one is left to the kernel, or completed in place on a device
 * without IFF_VNET_HDR.
 * Stops when the device's queue is full (EAGAIN); a frame the kernel rejects
 * (EINVAL) is skipped and not counted; other errors throw.
 */
static napi_value tap_write_frames(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage =
      "tapWriteFrames(handle, buffers: Uint8Array[], index: Uint32Array, count: number, checksum?: Uint8Array)";
  if (argc < 4) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  tap_t *tap = get_tap(env, argv[0], true);
  if (!tap) return NULL;
  netctl_frame_batch_t batch;
  if (!netctl_frame_batch_open(env, argv[1], argv[2], argv[3], &batch)) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  uint32_t count = batch.count;
  uint8_t *checksum = NULL;
  size_t checksum_len = 0;
  napi_valuetype fifth = napi_undefined;
  if (argc >= 5) napi_typeof(env, argv[4], &fifth);
  if (fifth != napi_undefined && !netctl_typed_array(env, argv[4], napi_uint8_array, (void **)&checksum, &checksum_len)) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  if (count > tap->frames_cap) {
    offload_frame_t *grown = realloc(tap->frames, count * sizeof *grown);
    if (!grown) return netctl_throw_errno(env, ENOMEM, "realloc", NULL);
    tap->frames = grown;
    tap->frames_cap = count;
  }
  for (uint32_t i = 0; i < count; i++) {
    uint8_t *data;
    size_t len;
    if (!netctl_frame_batch_get(env, &batch, i, &data, &len)) return NULL;
    tap->frames[i].data = data;
    tap->frames[i].len = len;
    tap->frames[i].checksum = i < checksum_len ? checksum[i] : OFFLOAD_CSUM_UNVERIFIED;
  }

  uint32_t written = 0;
  int rc = netctl_tap_write_frames(tap, tap->frames, count, &written);
  if (rc != 0) return netctl_throw_errno(env, -rc, "write", "TAP");
  napi_value result;
  napi_create_uint32(env, written, &result);
  return result;
}

/* tapClose(handle): stops polling and closes the fd; later calls throw. */
static napi_value tap_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  tap_t *tap = argc < 1 ? NULL : get_tap(env, argv[0], false);
  if (!tap) return NULL;
  if (tap->flow) netctl_flow_detach_network(tap->flow);
  netctl_poller_close(&tap->poller);
  return NULL;
}

napi_status netctl_register_tap(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"tapOpen", NULL, tap_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tapHandle", NULL, tap_handle, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tapStart", NULL, tap_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tapStop", NULL, tap_stop, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tapWriteBatch", NULL, tap_write_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tapWriteFrames", NULL, tap_write_frames, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tapClose", NULL, tap_close, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
