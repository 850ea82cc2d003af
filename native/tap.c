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
#include "offload.h"

#define TAP_BATCH NETCTL_TAP_BATCH
/* A 64 KB GSO segment plus the virtio-net header in front of it. */
#define TAP_READ_SIZE (65536 + 64)

typedef struct {
  napi_env env;
  uv_poll_t poll;
  int fd;
  int vnet_hdr;  /* frames carry a virtio_net_hdr (IFF_VNET_HDR) */
  int polling;   /* uv_poll_start is active */
  int closed;    /* fd closed, poll handle closing or closed */
  /* The struct is freed when both libuv and the JS external are done with it. */
  int handle_closed;
  int finalized;
  /* While polling: the callback, and the FrameBatch's index (Uint32Array) and buffers (array). */
  netctl_started_t started;
  napi_async_context async_context;
  /* TAP_BATCH slots of TAP_READ_SIZE that frames are read into; with borrowBuffers an external
   * ArrayBuffer owns them (`borrowed`), else the struct does. */
  uint8_t *arena;
  napi_ref borrowed;
  /* The frames of one tapWriteFrames call, grown as needed. */
  offload_frame_t *frames;
  size_t frames_cap;
} tap_t;

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
  if (argc < 3 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &name_len) != napi_ok ||
      napi_get_value_bool(env, argv[1], &vnet_hdr) != napi_ok ||
      napi_get_value_int32(env, argv[2], &offloads) != napi_ok) {
    napi_throw_type_error(env, NULL, "tapOpen(name: string, vnetHdr: boolean, offloads: number)");
    return NULL;
  }
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

static tap_t *get_tap(napi_env env, napi_value value) {
  tap_t *tap = NULL;
  if (napi_get_value_external(env, value, (void **)&tap) != napi_ok || tap == NULL) {
    napi_throw_type_error(env, NULL, "expected a TAP handle");
    return NULL;
  }
  return tap;
}

static tap_t *get_open_tap(napi_env env, napi_value value) {
  tap_t *tap = get_tap(env, value);
  if (tap && tap->closed) {
    napi_throw_error(env, "ERR_TAP_CLOSED", "TAP device is closed");
    return NULL;
  }
  return tap;
}

static void free_tap(tap_t *tap) {
  if (tap->borrowed)
    napi_delete_reference(tap->env, tap->borrowed);
  else
    free(tap->arena);
  free(tap->frames);
  free(tap);
}

static void on_poll_closed(uv_handle_t *handle) {
  tap_t *tap = handle->data;
  tap->handle_closed = 1;
  if (tap->finalized) free_tap(tap);
}

static void stop_polling(tap_t *tap) {
  if (!tap->polling) return;
  uv_poll_stop(&tap->poll);
  tap->polling = 0;
  netctl_started_release(tap->env, &tap->started);
}

/* Closes the fd now and frees the struct once libuv has let go of the handle. */
static void close_tap(tap_t *tap) {
  if (tap->closed) return;
  stop_polling(tap);
  tap->closed = 1;
  close(tap->fd);
  tap->fd = -1;
  napi_async_destroy(tap->env, tap->async_context);
  uv_close((uv_handle_t *)&tap->poll, on_poll_closed);
}

static void tap_finalize(napi_env env, void *data, void *hint) {
  tap_t *tap = data;
  /* Unreachable from JS, hence not polling (polling holds a reference). */
  tap->finalized = 1;
  if (!tap->closed)
    close_tap(tap);
  else if (tap->handle_closed)
    free_tap(tap);
}

static void free_arena(napi_env env, void *data, void *hint) { free(data); }

/* tapHandle(fd, vnetHdr, borrowBuffers) -> handle: takes ownership of fd for polling and closing.
 * With borrowBuffers, frames delivered are in the handle's own memory, valid until the callback
 * returns; else in a fresh Buffer per batch. */
static napi_value tap_handle(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  bool vnet_hdr, borrow;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_bool(env, argv[1], &vnet_hdr) != napi_ok || napi_get_value_bool(env, argv[2], &borrow) != napi_ok) {
    napi_throw_type_error(env, NULL, "tapHandle(fd: number, vnetHdr: boolean, borrowBuffers: boolean)");
    return NULL;
  }
  tap_t *tap = calloc(1, sizeof *tap);
  if (!tap) return netctl_throw_errno(env, ENOMEM, "calloc", NULL);
  tap->env = env;
  tap->fd = fd;
  tap->vnet_hdr = vnet_hdr;
  if (!(tap->arena = malloc((size_t)TAP_BATCH * TAP_READ_SIZE))) {
    free(tap);
    return netctl_throw_errno(env, ENOMEM, "malloc", NULL);
  }
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  int rc = uv_poll_init(loop, &tap->poll, fd);
  if (rc != 0) {
    free(tap->arena);
    free(tap);
    return netctl_throw_errno(env, -rc, "uv_poll_init", NULL);
  }
  tap->poll.data = tap;
  if (borrow) {
    napi_value arraybuffer;
    napi_create_external_arraybuffer(env, tap->arena, (size_t)TAP_BATCH * TAP_READ_SIZE, free_arena, NULL, &arraybuffer);
    napi_create_reference(env, arraybuffer, 1, &tap->borrowed);
  }

  napi_value resource_name, handle;
  napi_create_string_utf8(env, "netctl:TapDevice", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, NULL, resource_name, &tap->async_context);
  napi_create_external(env, tap, tap_finalize, NULL, &handle);
  return handle;
}

static void deliver(tap_t *tap, napi_value count) {
  napi_env env = tap->env;
  napi_value callback, global, result;
  napi_get_reference_value(env, tap->started.callback, &callback);
  /* napi_make_callback rejects undefined as receiver. */
  napi_get_global(env, &global);
  if (napi_make_callback(env, tap->async_context, global, callback, 1, &count, &result) == napi_pending_exception) {
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_fatal_exception(env, error);
  }
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  tap_t *tap = handle->data;
  if (tap->closed || !tap->polling) return;
  if (status < 0) {
    /* POLLERR: the device is gone (e.g. its namespace was deleted); libuv
     * has already stopped the watcher, so release what polling held. */
    stop_polling(tap);
    return;
  }
  napi_env env = tap->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);

  uint32_t count = 0;
  size_t lengths[TAP_BATCH];
  while (count < TAP_BATCH) {
    ssize_t n = read(tap->fd, tap->arena + (size_t)count * TAP_READ_SIZE, TAP_READ_SIZE);
    if (n < 0) {
      if (errno == EINTR) continue;
      /* EAGAIN: drained. Other errors (the device went away): deliver what
       * was read; the poll reports the condition again if it persists. */
      break;
    }
    if (n == 0) break;
    lengths[count++] = (size_t)n;
  }
  /* batch[0]: the index, batch[1]: the buffers. */
  napi_value batch[2];
  uint32_t *index;
  size_t index_len;
  if (count > 0 && netctl_started_batch(env, &tap->started, batch, 2, &index, &index_len) &&
      index_len >= (size_t)NETCTL_FRAME_STRIDE * count) {
    napi_value buffers = batch[1];
    if (tap->borrowed) {
      for (uint32_t i = 0; i < count; i++) {
        uint32_t *entry = index + (size_t)NETCTL_FRAME_STRIDE * i;
        entry[NETCTL_FRAME_BUFFER] = 0;
        entry[NETCTL_FRAME_OFFSET] = i * TAP_READ_SIZE;
        entry[NETCTL_FRAME_LENGTH] = (uint32_t)lengths[i];
      }
    } else {
      /* The callee may keep these: one fresh Buffer with the frames back to back. */
      size_t total = 0;
      for (uint32_t i = 0; i < count; i++) total += lengths[i];
      napi_value buffer;
      uint8_t *bytes;
      napi_create_buffer(env, total, (void **)&bytes, &buffer);
      napi_set_element(env, buffers, 0, buffer);
      size_t offset = 0;
      for (uint32_t i = 0; i < count; i++) {
        memcpy(bytes + offset, tap->arena + (size_t)i * TAP_READ_SIZE, lengths[i]);
        uint32_t *entry = index + (size_t)NETCTL_FRAME_STRIDE * i;
        entry[NETCTL_FRAME_BUFFER] = 0;
        entry[NETCTL_FRAME_OFFSET] = (uint32_t)offset;
        entry[NETCTL_FRAME_LENGTH] = (uint32_t)lengths[i];
        offset += lengths[i];
      }
    }
    napi_value count_value;
    napi_create_uint32(env, count, &count_value);
    deliver(tap, count_value);
  }
  napi_close_handle_scope(env, scope);
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
  tap_t *tap = get_open_tap(env, argv[0]);
  if (!tap) return NULL;
  if (!netctl_started_args(env, argv[1], argv + 2, 2, (size_t)NETCTL_FRAME_STRIDE * TAP_BATCH)) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  if (!tap->polling) {
    int rc = uv_poll_start(&tap->poll, UV_READABLE, on_readable);
    if (rc != 0) return netctl_throw_errno(env, -rc, "uv_poll_start", NULL);
    tap->polling = 1;
  }
  netctl_started_hold(env, &tap->started, argv[0], argv[1], argv + 2, 2);
  if (tap->borrowed) netctl_expose_arena(env, tap->borrowed, (size_t)TAP_BATCH * TAP_READ_SIZE, argv[3]);
  return NULL;
}

/* tapStop(handle): stops delivering frames; the kernel queues (then drops) them. */
static napi_value tap_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  tap_t *tap = argc < 1 ? NULL : get_open_tap(env, argv[0]);
  if (!tap) return NULL;
  stop_polling(tap);
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
  tap_t *tap = get_open_tap(env, argv[0]);
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
    void *data;
    size_t size;
    napi_get_element(env, argv[1], written, &frame);
    if (napi_get_buffer_info(env, frame, &data, &size) != napi_ok) {
      napi_throw_type_error(env, NULL, "frames must be an array of Buffers");
      return NULL;
    }
    ssize_t n;
    do {
      n = write(tap->fd, data, size);
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
  tap_t *tap = get_open_tap(env, argv[0]);
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

  uint8_t scratch[COALESCE_SCRATCH];
  struct iovec iov[COALESCE_MAX_SEGMENTS + 1];
  uint32_t written = 0;
  for (uint32_t done = 0; done < count;) {
    size_t taken;
    ssize_t n;
    if (tap->vnet_hdr) {
      int iov_count;
      taken = offload_coalesce_next(tap->frames + done, count - done, scratch, iov, &iov_count);
      do {
        n = writev(tap->fd, iov, iov_count);
      } while (n < 0 && errno == EINTR);
    } else {
      taken = 1;
      offload_frame_t *frame = &tap->frames[done];
      if (frame->checksum >= OFFLOAD_CSUM_PARTIAL_MIN &&
          !offload_complete_partial((uint8_t *)frame->data, frame->len, frame->checksum)) {
        done++;
        continue;
      }
      do {
        n = write(tap->fd, frame->data, frame->len);
      } while (n < 0 && errno == EINTR);
    }
    if (n < 0) {
      if (errno == EAGAIN) break;
      if (errno != EINVAL) return netctl_throw_errno(env, errno, "write", "TAP");
    } else {
      written += (uint32_t)taken;
    }
    done += (uint32_t)taken;
  }
  napi_value result;
  napi_create_uint32(env, written, &result);
  return result;
}

/* tapClose(handle): stops polling and closes the fd; later calls throw. */
static napi_value tap_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  tap_t *tap = argc < 1 ? NULL : get_tap(env, argv[0]);
  if (!tap) return NULL;
  close_tap(tap);
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
