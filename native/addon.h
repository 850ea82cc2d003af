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
 * Argument readers, one per type, shared by every part: each returns false, having thrown
 * TypeError(message) (usually the function's usage), when `value` is not of its type.
 */
bool netctl_get_int32(napi_env env, napi_value value, int32_t *out, const char *message);
bool netctl_get_uint32(napi_env env, napi_value value, uint32_t *out, const char *message);
bool netctl_get_bool(napi_env env, napi_value value, bool *out, const char *message);
/* The bytes of a Buffer, Uint8Array or other ArrayBufferView (data never NULL). */
bool netctl_get_bytes(napi_env env, napi_value value, uint8_t **data, size_t *len, const char *message);
/* A string, cut to fit `size` bytes with its NUL; *len is what was written, so len >= size - 1 may mean cut. */
bool netctl_get_string(napi_env env, napi_value value, char *out, size_t size, size_t *len, const char *message);

/* The data and element count of `value` when it is a typed array of `type` (data never NULL); else false. */
bool netctl_typed_array(napi_env env, napi_value value, napi_typedarray_type type, void **data, size_t *len);

/*
 * A FrameBatch from JavaScript (src/sys/tap.ts), laid out as NETCTL_FRAME_* in
 * batch_layout.h. Frames of one buffer come in runs, so the last buffer
 * looked up is kept.
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

/* What a polling handle (TAP, UDP socket) holds while started: itself (so it stays alive), its
 * callback, and the JavaScript arrays it fills for each call. */
#define NETCTL_BATCH_REFS 3
typedef struct {
  napi_ref self;
  napi_ref callback;
  napi_ref batch[NETCTL_BATCH_REFS];
} netctl_started_t;

/* Takes the references of a start, replacing those of an earlier one: `handle` (kept from the
 * first start on), `callback`, and `count` (at most NETCTL_BATCH_REFS) batch arrays. */
void netctl_started_hold(napi_env env, netctl_started_t *started, napi_value handle, napi_value callback,
                         const napi_value *batch, size_t count);
/* True for what tapStart and udpStart take after the handle: `callback` a function, batch[0] a
 * Uint32Array of at least `min_index` entries, batch[1..count) arrays. */
bool netctl_started_args(napi_env env, napi_value callback, const napi_value *batch, size_t count, size_t min_index);
/* The `count` batch arrays a start holds, and batch[0]'s entries; false when they cannot be read. */
bool netctl_started_batch(napi_env env, const netctl_started_t *started, napi_value *batch, size_t count,
                          uint32_t **index, size_t *index_len);
/* Drops every reference a start took. */
void netctl_started_release(napi_env env, netctl_started_t *started);
/* Sets array[0] to a Uint8Array over all `size` bytes of the ArrayBuffer that `arena` refers to. */
void netctl_expose_arena(napi_env env, napi_ref arena, size_t size, napi_value array);

napi_status netctl_register_esp(napi_env env, napi_value exports);
napi_status netctl_register_flow(napi_env env, napi_value exports);
napi_status netctl_register_answers(napi_env env, napi_value exports);
napi_status netctl_register_fslock(napi_env env, napi_value exports);
napi_status netctl_register_netns(napi_env env, napi_value exports);
napi_status netctl_register_offload(napi_env env, napi_value exports);
napi_status netctl_register_rlimit(napi_env env, napi_value exports);
napi_status netctl_register_tap(napi_env env, napi_value exports);
napi_status netctl_register_tcp_listen(napi_env env, napi_value exports);
napi_status netctl_register_udp(napi_env env, napi_value exports);

#endif
