#include "addon.h"
napi_status netctl_register_netns(napi_env env, napi_value exports) { return napi_ok; }
