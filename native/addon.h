/* Each part of the addon registers its functions on `exports`. */
#ifndef NETCTL_ADDON_H
#define NETCTL_ADDON_H
#include <node_api.h>

napi_status netctl_register_fslock(napi_env env, napi_value exports);
napi_status netctl_register_netns(napi_env env, napi_value exports);
napi_status netctl_register_offload(napi_env env, napi_value exports);
napi_status netctl_register_tap(napi_env env, napi_value exports);
napi_status netctl_register_udp(napi_env env, napi_value exports);

#endif
