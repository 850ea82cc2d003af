/* Each part of the addon registers its functions on `exports`. */
#ifndef NETCTL_ADDON_H
#define NETCTL_ADDON_H
#include <node_api.h>

/* Throws an Error whose `code` is the errno name (EEXIST…), with `errno` and `syscall`
 * properties and a message naming the call and, when given, what it acted on. Returns NULL. */
napi_value netctl_throw_errno(napi_env env, int err, const char *syscall, const char *what);

napi_status netctl_register_fslock(napi_env env, napi_value exports);
napi_status netctl_register_netns(napi_env env, napi_value exports);
napi_status netctl_register_offload(napi_env env, napi_value exports);
napi_status netctl_register_tap(napi_env env, napi_value exports);
napi_status netctl_register_udp(napi_env env, napi_value exports);

#endif
