/* The shared life of a polled fd: see poller.h. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <unistd.h>

#include "poller.h"

static void free_poller(netctl_poller_t *poller) {
  if (poller->borrowed)
    napi_delete_reference(poller->env, poller->borrowed);
  else
    free(poller->arena);
  poller->kind->release(poller);
}

static void on_poll_closed(uv_handle_t *handle) {
  netctl_poller_t *poller = handle->data;
  poller->handle_closed = 1;
  if (poller->finalized) free_poller(poller);
}

void netctl_poller_stop(netctl_poller_t *poller) {
  if (!poller->polling) return;
  uv_poll_stop(&poller->poll);
  poller->polling = 0;
  netctl_started_release(poller->env, &poller->started);
}

void netctl_poller_close(netctl_poller_t *poller) {
  if (poller->closed) return;
  netctl_poller_stop(poller);
  poller->closed = 1;
  close(poller->fd);
  poller->fd = -1;
  napi_async_destroy(poller->env, poller->async_context);
  uv_close((uv_handle_t *)&poller->poll, on_poll_closed);
}

static void finalize(napi_env env, void *data, void *hint) {
  netctl_poller_t *poller = data;
  /* Unreachable from JS, hence not polling (polling holds a reference). */
  poller->finalized = 1;
  if (!poller->closed)
    netctl_poller_close(poller);
  else if (poller->handle_closed)
    free_poller(poller);
}

static void free_arena(napi_env env, void *data, void *hint) { free(data); }

napi_value netctl_poller_open(napi_env env, netctl_poller_t *poller, const netctl_poller_kind_t *kind, int fd,
                              uint8_t *arena, size_t arena_size, bool borrow) {
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  int rc = uv_poll_init(loop, &poller->poll, fd);
  if (rc != 0) return netctl_throw_errno(env, -rc, "uv_poll_init", NULL);
  poller->kind = kind;
  poller->env = env;
  poller->fd = fd;
  poller->arena = arena;
  poller->arena_size = arena_size;
  poller->poll.data = poller;
  if (borrow) {
    napi_value arraybuffer;
    napi_create_external_arraybuffer(env, arena, arena_size, free_arena, NULL, &arraybuffer);
    napi_create_reference(env, arraybuffer, 1, &poller->borrowed);
  }
  napi_value resource_name, handle;
  napi_create_string_utf8(env, kind->resource_name, NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, NULL, resource_name, &poller->async_context);
  napi_create_external(env, poller, finalize, NULL, &handle);
  return handle;
}

netctl_poller_t *netctl_poller_get(napi_env env, napi_value value, const netctl_poller_kind_t *kind, bool open) {
  netctl_poller_t *poller = NULL;
  if (napi_get_value_external(env, value, (void **)&poller) != napi_ok || poller == NULL || poller->kind != kind) {
    napi_throw_type_error(env, NULL, kind->not_a_handle);
    return NULL;
  }
  if (open && poller->closed) {
    napi_throw_error(env, kind->closed_code, kind->closed_message);
    return NULL;
  }
  return poller;
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  netctl_poller_t *poller = handle->data;
  if (poller->closed || !poller->polling) return;
  if (status < 0) {
    /* POLLERR (e.g. a TAP whose namespace was deleted): libuv has already
     * stopped the watcher, so release what polling held. */
    netctl_poller_stop(poller);
    return;
  }
  napi_handle_scope scope;
  napi_open_handle_scope(poller->env, &scope);
  poller->kind->on_readable(poller);
  napi_close_handle_scope(poller->env, scope);
}

bool netctl_poller_start(napi_env env, netctl_poller_t *poller, napi_value handle, napi_value callback,
                         const napi_value *batch, size_t count, size_t min_index, const char *usage) {
  if (!netctl_started_args(env, callback, batch, count, min_index)) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  if (!poller->polling) {
    int rc = uv_poll_start(&poller->poll, UV_READABLE, on_poll);
    if (rc != 0) {
      netctl_throw_errno(env, -rc, "uv_poll_start", NULL);
      return false;
    }
    poller->polling = 1;
  }
  netctl_started_hold(env, &poller->started, handle, callback, batch, count);
  if (poller->borrowed) netctl_expose_arena(env, poller->borrowed, poller->arena_size, batch[1]);
  return true;
}

void netctl_poller_deliver(netctl_poller_t *poller, uint32_t count) {
  napi_env env = poller->env;
  napi_value callback, global, count_value, result;
  napi_get_reference_value(env, poller->started.callback, &callback);
  /* napi_make_callback rejects undefined as receiver. */
  napi_get_global(env, &global);
  napi_create_uint32(env, count, &count_value);
  if (napi_make_callback(env, poller->async_context, global, callback, 1, &count_value, &result) ==
      napi_pending_exception) {
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_fatal_exception(env, error);
  }
}
