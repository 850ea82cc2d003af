#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "addon.h"

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

static napi_value Init(napi_env env, napi_value exports) {
  if (netctl_register_fslock(env, exports) != napi_ok) return NULL;
  if (netctl_register_netns(env, exports) != napi_ok) return NULL;
  if (netctl_register_offload(env, exports) != napi_ok) return NULL;
  if (netctl_register_tap(env, exports) != napi_ok) return NULL;
  if (netctl_register_udp(env, exports) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
