/* Advisory whole-file locks (flock(2)) for the file store. Node has no flock;
 * JavaScript polls with LOCK_NB so the event loop never blocks. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/file.h>

#include "addon.h"

#define FD_MESSAGE "fd must be a non-negative integer"

static bool read_fd(napi_env env, napi_value value, int32_t *fd) {
  if (!netctl_get_int32(env, value, fd, FD_MESSAGE)) return false;
  if (*fd < 0) {
    napi_throw_type_error(env, NULL, FD_MESSAGE);
    return false;
  }
  return true;
}

/* flock(fd, exclusive, nonBlocking): true when the lock is held, false when
 * LOCK_NB would have blocked. */
static napi_value js_flock(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "flock(fd, exclusive, nonBlocking) takes 3 arguments");
    return NULL;
  }
  int32_t fd;
  bool exclusive, non_blocking;
  if (!read_fd(env, argv[0], &fd)) return NULL;
  if (!netctl_get_bool(env, argv[1], &exclusive, "exclusive must be a boolean")) return NULL;
  if (!netctl_get_bool(env, argv[2], &non_blocking, "nonBlocking must be a boolean")) return NULL;

  int operation = (exclusive ? LOCK_EX : LOCK_SH) | (non_blocking ? LOCK_NB : 0);
  int rc;
  do {
    rc = flock(fd, operation);
  } while (rc == -1 && errno == EINTR);

  bool held = true;
  if (rc == -1) {
    if (!(non_blocking && errno == EWOULDBLOCK)) return netctl_throw_errno(env, errno, "flock", NULL);
    held = false;
  }
  napi_value result;
  if (napi_get_boolean(env, held, &result) != napi_ok) return NULL;
  return result;
}

static napi_value js_funlock(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "funlock(fd) takes 1 argument");
    return NULL;
  }
  int32_t fd;
  if (!read_fd(env, argv[0], &fd)) return NULL;
  int rc;
  do {
    rc = flock(fd, LOCK_UN);
  } while (rc == -1 && errno == EINTR);
  if (rc == -1) return netctl_throw_errno(env, errno, "flock", NULL);
  return NULL;
}

napi_status netctl_register_fslock(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"flock", NULL, js_flock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"funlock", NULL, js_funlock, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
}
