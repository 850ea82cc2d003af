#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "addon.h"
#include "batch_layout.h"

napi_value netctl_throw_errno(napi_env env, int err, const char *syscall, const char *what) {
  const char *name = strerrorname_np(err);
  char msg[512];
  if (what)
    snprintf(msg, sizeof msg, "%s %s: %s", syscall, what, strerror(err));
  else
    snprintf(msg, sizeof msg, "%s: %s", syscall, strerror(err));
  napi_value code, text, error, errno_value, syscall_value;
  napi_create_string_utf8(env, name ? name : "EUNKNOWN", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &error);
  napi_create_int32(env, err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value);
  napi_set_named_property(env, error, "syscall", syscall_value);
  napi_throw(env, error);
  return NULL;
}

static bool throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return false;
}

bool netctl_get_int32(napi_env env, napi_value value, int32_t *out, const char *message) {
  return napi_get_value_int32(env, value, out) == napi_ok || throw_type(env, message);
}

bool netctl_get_uint32(napi_env env, napi_value value, uint32_t *out, const char *message) {
  return napi_get_value_uint32(env, value, out) == napi_ok || throw_type(env, message);
}

bool netctl_get_bool(napi_env env, napi_value value, bool *out, const char *message) {
  return napi_get_value_bool(env, value, out) == napi_ok || throw_type(env, message);
}

bool netctl_get_bytes(napi_env env, napi_value value, uint8_t **data, size_t *len, const char *message) {
  static uint8_t empty;
  if (napi_get_buffer_info(env, value, (void **)data, len) != napi_ok) return throw_type(env, message);
  /* An empty view may have no memory at all. */
  if (*data == NULL) *data = &empty;
  return true;
}

bool netctl_get_string(napi_env env, napi_value value, char *out, size_t size, size_t *len, const char *message) {
  return napi_get_value_string_utf8(env, value, out, size, len) == napi_ok || throw_type(env, message);
}

bool netctl_typed_array(napi_env env, napi_value value, napi_typedarray_type type, void **data, size_t *len) {
  static uint64_t empty;
  napi_typedarray_type actual;
  napi_value arraybuffer;
  size_t offset;
  bool is_typedarray = false;
  napi_is_typedarray(env, value, &is_typedarray);
  if (!is_typedarray || napi_get_typedarray_info(env, value, &actual, len, data, &arraybuffer, &offset) != napi_ok ||
      actual != type)
    return false;
  /* An empty array may have no memory at all. */
  if (*data == NULL) *data = &empty;
  return true;
}

bool netctl_frame_batch_open(napi_env env, napi_value buffers, napi_value index, napi_value count,
                             netctl_frame_batch_t *batch) {
  bool is_array = false;
  size_t index_len;
  void *data;
  napi_is_array(env, buffers, &is_array);
  if (!is_array || napi_get_value_uint32(env, count, &batch->count) != napi_ok ||
      !netctl_typed_array(env, index, napi_uint32_array, &data, &index_len) || (size_t)batch->count * NETCTL_FRAME_STRIDE > index_len)
    return false;
  batch->buffers = buffers;
  napi_get_array_length(env, buffers, &batch->buffer_count);
  batch->index = data;
  batch->current = UINT32_MAX;
  batch->base = NULL;
  batch->base_len = 0;
  return true;
}

bool netctl_frame_batch_get(napi_env env, netctl_frame_batch_t *batch, uint32_t i, uint8_t **data, size_t *len) {
  const uint32_t *entry = batch->index + (size_t)NETCTL_FRAME_STRIDE * i;
  uint32_t which = entry[NETCTL_FRAME_BUFFER], offset = entry[NETCTL_FRAME_OFFSET], length = entry[NETCTL_FRAME_LENGTH];
  if (which != batch->current) {
    napi_value buffer;
    if (which >= batch->buffer_count || napi_get_element(env, batch->buffers, which, &buffer) != napi_ok ||
        napi_get_buffer_info(env, buffer, (void **)&batch->base, &batch->base_len) != napi_ok) {
      napi_throw_type_error(env, NULL, "buffers must hold a Uint8Array for every index");
      return false;
    }
    batch->current = which;
  }
  if ((size_t)offset + length > batch->base_len) {
    napi_throw_range_error(env, NULL, "frame outside its buffer");
    return false;
  }
  *data = batch->base + offset;
  *len = length;
  return true;
}

static void drop_ref(napi_env env, napi_ref *ref) {
  if (*ref) napi_delete_reference(env, *ref);
  *ref = NULL;
}

void netctl_started_hold(napi_env env, netctl_started_t *started, napi_value handle, napi_value callback,
                         const napi_value *batch, size_t count) {
  if (!started->self) napi_create_reference(env, handle, 1, &started->self);
  drop_ref(env, &started->callback);
  napi_create_reference(env, callback, 1, &started->callback);
  for (size_t i = 0; i < NETCTL_BATCH_REFS; i++) {
    drop_ref(env, &started->batch[i]);
    if (i < count) napi_create_reference(env, batch[i], 1, &started->batch[i]);
  }
}

bool netctl_started_args(napi_env env, napi_value callback, const napi_value *batch, size_t count, size_t min_index) {
  napi_valuetype type;
  void *data;
  size_t index_len;
  if (napi_typeof(env, callback, &type) != napi_ok || type != napi_function ||
      !netctl_typed_array(env, batch[0], napi_uint32_array, &data, &index_len) || index_len < min_index)
    return false;
  for (size_t i = 1; i < count; i++) {
    bool is_array = false;
    napi_is_array(env, batch[i], &is_array);
    if (!is_array) return false;
  }
  return true;
}

bool netctl_started_batch(napi_env env, const netctl_started_t *started, napi_value *batch, size_t count,
                          uint32_t **index, size_t *index_len) {
  for (size_t i = 0; i < count; i++)
    if (napi_get_reference_value(env, started->batch[i], &batch[i]) != napi_ok) return false;
  return netctl_typed_array(env, batch[0], napi_uint32_array, (void **)index, index_len);
}

void netctl_started_release(napi_env env, netctl_started_t *started) {
  drop_ref(env, &started->self);
  drop_ref(env, &started->callback);
  for (size_t i = 0; i < NETCTL_BATCH_REFS; i++) drop_ref(env, &started->batch[i]);
}

void netctl_expose_arena(napi_env env, napi_ref arena, size_t size, napi_value array) {
  napi_value arraybuffer, view;
  napi_get_reference_value(env, arena, &arraybuffer);
  napi_create_typedarray(env, napi_uint8_array, size, arraybuffer, 0, &view);
  napi_set_element(env, array, 0, view);
}

/* Exports the batch layouts (batch_layout.h) as `batchLayout`, so a test can hold them against src/sys/batch-layout.ts. */
static napi_status register_batch_layout(napi_env env, napi_value exports) {
  napi_value layout, value;
  napi_status status = napi_create_object(env, &layout);
#define EXPORT_LAYOUT(name)                                                                                        \
  if (status == napi_ok) status = napi_create_uint32(env, NETCTL_##name, &value);                                 \
  if (status == napi_ok) status = napi_set_named_property(env, layout, #name, value);
  NETCTL_BATCH_LAYOUT(EXPORT_LAYOUT)
#undef EXPORT_LAYOUT
  if (status != napi_ok) return status;
  return napi_set_named_property(env, exports, "batchLayout", layout);
}

static napi_value Init(napi_env env, napi_value exports) {
  if (register_batch_layout(env, exports) != napi_ok) return NULL;
  if (netctl_register_esp(env, exports) != napi_ok) return NULL;
  if (netctl_register_fslock(env, exports) != napi_ok) return NULL;
  if (netctl_register_netns(env, exports) != napi_ok) return NULL;
  if (netctl_register_offload(env, exports) != napi_ok) return NULL;
  if (netctl_register_rlimit(env, exports) != napi_ok) return NULL;
  if (netctl_register_tap(env, exports) != napi_ok) return NULL;
  if (netctl_register_tcp_listen(env, exports) != napi_ok) return NULL;
  if (netctl_register_udp(env, exports) != napi_ok) return NULL;
  if (netctl_register_flow(env, exports) != napi_ok) return NULL;
  if (netctl_register_answers(env, exports) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
