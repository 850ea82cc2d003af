/*
 * TCP listening sockets made inside any network namespace, for a
 * `net.Server` to adopt (Node cannot make a socket in another namespace).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <unistd.h>

#include "socket.h"

/* tcpListen(netnsPath, family, address, port, backlog) -> fd of a listening,
 * non-blocking, close-on-exec TCP socket made in the namespace. */
static napi_value tcp_listen(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  netctl_endpoint_t endpoint;
  int32_t backlog;
  if (!netctl_endpoint_args(env, info, argv, "tcpListen(netnsPath, family, address, port, backlog)", &endpoint))
    return NULL;
  const char *backlog_message = "backlog must be a positive number";
  if (!netctl_get_int32(env, argv[4], &backlog, backlog_message)) return NULL;
  if (backlog < 1) {
    napi_throw_type_error(env, NULL, backlog_message);
    return NULL;
  }
  int fd = netctl_endpoint_socket(env, &endpoint, SOCK_STREAM);
  if (fd < 0) return NULL;
  const char *failed;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) failed = "setsockopt";
  else if (bind(fd, &endpoint.addr.sa, endpoint.addr_len) != 0) failed = "bind";
  else if (listen(fd, backlog) != 0) failed = "listen";
  else failed = NULL;
  if (failed) {
    int err = errno;
    close(fd);
    return netctl_throw_errno(env, err, failed, NULL);
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

napi_status netctl_register_tcp_listen(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"tcpListen", NULL, tcp_listen, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
