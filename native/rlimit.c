/* The process's open-file limit (RLIMIT_NOFILE). The daemon holds a few
 * descriptors per sandbox (DNS listeners, their TCP connections), so it raises
 * its soft limit to the hard one at start, and sizes its caps by what it got. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <sys/resource.h>

#include "addon.h"

static double limit_value(rlim_t value) {
  return value == RLIM_INFINITY ? INFINITY : (double)value;
}

static napi_value limits_object(napi_env env, const struct rlimit *limit) {
  napi_value result, soft, hard;
  if (napi_create_object(env, &result) != napi_ok || napi_create_double(env, limit_value(limit->rlim_cur), &soft) != napi_ok ||
      napi_create_double(env, limit_value(limit->rlim_max), &hard) != napi_ok ||
      napi_set_named_property(env, result, "soft", soft) != napi_ok ||
      napi_set_named_property(env, result, "hard", hard) != napi_ok)
    return NULL;
  return result;
}

/* fileLimit(): { soft, hard } of RLIMIT_NOFILE. */
static napi_value js_file_limit(napi_env env, napi_callback_info info) {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == -1) return netctl_throw_errno(env, errno, "getrlimit", "RLIMIT_NOFILE");
  return limits_object(env, &limit);
}

/* raiseFileLimit(): sets the soft RLIMIT_NOFILE to the hard one; returns the limits now in force. */
static napi_value js_raise_file_limit(napi_env env, napi_callback_info info) {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == -1) return netctl_throw_errno(env, errno, "getrlimit", "RLIMIT_NOFILE");
  if (limit.rlim_cur != limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) == -1) return netctl_throw_errno(env, errno, "setrlimit", "RLIMIT_NOFILE");
  }
  return limits_object(env, &limit);
}

napi_status netctl_register_rlimit(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"fileLimit", NULL, js_file_limit, NULL, NULL, NULL, napi_enumerable, NULL},
      {"raiseFileLimit", NULL, js_raise_file_limit, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
}
