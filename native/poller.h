/*
 * The life of a polled fd (a TAP, a UDP socket): a uv_poll on the loop, a
 * JavaScript handle (a napi external) that owns it, a start that holds the
 * callback and the batch arrays it refills, stop, close, and the freeing
 * that waits for both libuv and the garbage collector to let go.
 *
 * An owner embeds netctl_poller_t as its first member and supplies what is
 * its own: reading a wake-up's data (on_readable, inside a handle scope)
 * and freeing itself (release).
 */
#ifndef NETCTL_POLLER_H
#define NETCTL_POLLER_H
#include <uv.h>

#include "addon.h"

typedef struct netctl_poller netctl_poller_t;

/* How a kind of handle names itself in errors, and what it does of its own. */
typedef struct {
  const char *resource_name;  /* async resource, e.g. "netctl:TapDevice" */
  const char *not_a_handle;   /* TypeError message for a value that is not this handle */
  const char *closed_code;    /* Error code and message for a call after close */
  const char *closed_message;
  void (*on_readable)(netctl_poller_t *poller);
  /* Frees what the owner allocated beyond the poller, and the owner itself. */
  void (*release)(netctl_poller_t *poller);
} netctl_poller_kind_t;

struct netctl_poller {
  const netctl_poller_kind_t *kind;
  napi_env env;
  uv_poll_t poll;
  int fd;
  int polling; /* uv_poll_start is active */
  int closed;  /* fd closed, poll handle closing or closed */
  /* The owner is freed when both libuv and the JS external are done with it. */
  int handle_closed;
  int finalized;
  /* While polling: the callback and the batch arrays it is handed. */
  netctl_started_t started;
  napi_async_context async_context;
  /* Where data is read into; with borrowBuffers an external ArrayBuffer owns it (`borrowed`). */
  uint8_t *arena;
  size_t arena_size;
  napi_ref borrowed;
};

/* Sets up `poller` on `fd` with `arena` (arena_size bytes, malloc'd; owned from here on unless
 * this fails) and returns a handle that owns it, or throws and returns NULL, leaving fd, arena
 * and owner to the caller. */
napi_value netctl_poller_open(napi_env env, netctl_poller_t *poller, const netctl_poller_kind_t *kind, int fd,
                              uint8_t *arena, size_t arena_size, bool borrow);
/* The poller behind a handle; throws and returns NULL when it is not one of `kind`, or (with `open`) is closed. */
netctl_poller_t *netctl_poller_get(napi_env env, napi_value value, const netctl_poller_kind_t *kind, bool open);
/* Starts polling (or replaces the callback): `handle` as given to JS, `callback`, and `count` batch arrays,
 * batch[0] a Uint32Array of at least min_index entries, batch[1] the buffers array. Throws TypeError(usage)
 * for arguments that do not fit; returns false when it threw. */
bool netctl_poller_start(napi_env env, netctl_poller_t *poller, napi_value handle, napi_value callback,
                         const napi_value *batch, size_t count, size_t min_index, const char *usage);
void netctl_poller_stop(netctl_poller_t *poller);
/* Stops, closes the fd now, and frees the owner once libuv and JS have both let go. */
void netctl_poller_close(netctl_poller_t *poller);
/* Calls the started callback with `count`; an exception it throws is reported as uncaught. */
void netctl_poller_deliver(netctl_poller_t *poller, uint32_t count);

#endif
