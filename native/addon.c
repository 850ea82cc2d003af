#include "addon.h"

static napi_value Init(napi_env env, napi_value exports) {
  if (netctl_register_fslock(env, exports) != napi_ok) return NULL;
  if (netctl_register_netns(env, exports) != napi_ok) return NULL;
  if (netctl_register_offload(env, exports) != napi_ok) return NULL;
  if (netctl_register_tap(env, exports) != napi_ok) return NULL;
  if (netctl_register_udp(env, exports) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
