/* Each part of the addon registers its functions on `exports`. */
#ifndef NETCTL_ADDON_H
#define NETCTL_ADDON_H
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Throws an Error whose `code` is the errno name (EEXIST…), with `errno` and `syscall`
 * properties and a message naming the call and, when given, what it acted on. Returns NULL. */
napi_value netctl_throw_errno(napi_env env, int err, const char *syscall, const char *what);

/*
 * A FrameBatch from JavaScript (src/sys/tap.ts): frame i is index[3i+2] bytes at
 * index[3i+1] of buffers[index[3i]]. Frames of one buffer come in runs, so the
 * last buffer looked up is kept.
 */
typedef struct {
  napi_value buffers;
  uint32_t buffer_count;
  const uint32_t *index;
  uint32_t count;
  uint32_t current;
  uint8_t *base;
  size_t base_len;
} netctl_frame_batch_t;

/* Reads (buffers: Uint8Array[], index: Uint32Array, count: number); false (nothing thrown) if they do not fit. */
bool netctl_frame_batch_open(napi_env env, napi_value buffers, napi_value index, napi_value count,
                             netctl_frame_batch_t *batch);
/* Frame i (< batch->count); throws and returns false when the index points outside its buffers. */
bool netctl_frame_batch_get(napi_env env, netctl_frame_batch_t *batch, uint32_t i, uint8_t **data, size_t *len);

napi_status netctl_register_fslock(napi_env env, napi_value exports);
napi_status netctl_register_netns(napi_env env, napi_value exports);
napi_status netctl_register_offload(napi_env env, napi_value exports);
napi_status netctl_register_tap(napi_env env, napi_value exports);
napi_status netctl_register_udp(napi_env env, napi_value exports);

#endif
