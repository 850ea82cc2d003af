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
  size_t argc = 5;
  napi_value argv[5];
  char netns[4096];
  int family;
  netctl_addr_t addr;
  socklen_t addr_len;
  int32_t backlog;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5) {
    napi_throw_type_error(env, NULL, "tcpListen(netnsPath, family, address, port, backlog)");
    return NULL;
  }
  if (!netctl_endpoint_args(env, argv, netns, sizeof netns, &family, &addr, &addr_len)) return NULL;
  const char *backlog_message = "backlog must be a positive number";
  if (!netctl_get_int32(env, argv[4], &backlog, backlog_message)) return NULL;
  if (backlog < 1) {
    napi_throw_type_error(env, NULL, backlog_message);
    return NULL;
  }
  const char *failed;
  int fd = netctl_socket_in_netns(netns, family, SOCK_STREAM, &failed);
  if (fd < 0) return netctl_throw_errno(env, errno, failed, netns[0] ? netns : NULL);
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) failed = "setsockopt";
  else if (bind(fd, &addr.sa, addr_len) != 0) failed = "bind";
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
