/*
 * Sockets made inside any network namespace: the calling thread enters the
 * namespace for socket(2) only, and the socket stays bound to it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "netns.h"
#include "socket.h"

socklen_t netctl_parse_address(int family, const char *text, uint16_t port, netctl_addr_t *out) {
  memset(out, 0, sizeof *out);
  if (family == AF_INET) {
    out->in4.sin_family = AF_INET;
    out->in4.sin_port = htons(port);
    return inet_pton(AF_INET, text, &out->in4.sin_addr) == 1 ? sizeof out->in4 : 0;
  }
  out->in6.sin6_family = AF_INET6;
  out->in6.sin6_port = htons(port);
  if (inet_pton(AF_INET6, text, &out->in6.sin6_addr) == 1) return sizeof out->in6;
  struct in_addr v4;
  if (inet_pton(AF_INET, text, &v4) != 1) return 0;
  out->in6.sin6_addr.s6_addr[10] = 0xff;
  out->in6.sin6_addr.s6_addr[11] = 0xff;
  memcpy(&out->in6.sin6_addr.s6_addr[12], &v4, 4);
  return sizeof out->in6;
}

bool netctl_endpoint_args(napi_env env, napi_callback_info info, napi_value argv[5], const char *usage,
                          netctl_endpoint_t *endpoint) {
  size_t argc = 5;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  char address[INET6_ADDRSTRLEN + 1];
  size_t len;
  int32_t family_number, port;
  const char *expected = "expected (netnsPath: string, family: 4|6, address: string, port: number)";
  if (!netctl_get_string(env, argv[0], endpoint->netns, sizeof endpoint->netns, &len, expected)) return false;
  if (len >= sizeof endpoint->netns - 1) {
    napi_throw_type_error(env, NULL, expected);
    return false;
  }
  if (!netctl_get_int32(env, argv[1], &family_number, expected) ||
      !netctl_get_string(env, argv[2], address, sizeof address, &len, expected) ||
      !netctl_get_int32(env, argv[3], &port, expected))
    return false;
  if (family_number != 4 && family_number != 6) {
    napi_throw_range_error(env, NULL, "family must be 4 or 6");
    return false;
  }
  if (port < 0 || port > 65535) {
    napi_throw_range_error(env, NULL, "port must be within 0..65535");
    return false;
  }
  endpoint->family = family_number == 4 ? AF_INET : AF_INET6;
  endpoint->addr_len = netctl_parse_address(endpoint->family, address, (uint16_t)port, &endpoint->addr);
  if (endpoint->addr_len == 0) {
    napi_throw_range_error(env, NULL, "address is not an IP address of the socket's family");
    return false;
  }
  return true;
}

/* socket(2) inside the namespace at `netns` ("" = the calling thread's own).
 * Returns the fd, or -1 with errno set and *failed naming the call. */
static int socket_in_netns(const char *netns, int domain, int type, const char **failed) {
  *failed = "socket";
  if (netns[0] == '\0') return socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int saved;
  switch (netctl_netns_enter(netns, &saved)) {
    case NETCTL_NETNS_ENTERED:
      break;
    case NETCTL_NETNS_OPEN_SELF:
      *failed = "open " NETCTL_SELF_NETNS;
      return -1;
    case NETCTL_NETNS_OPEN_TARGET:
      *failed = "open";
      return -1;
    case NETCTL_NETNS_SETNS:
      *failed = "setns";
      return -1;
  }
  int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int err = errno;
  netctl_netns_restore(saved);
  errno = err;
  return fd;
}

int netctl_endpoint_socket(napi_env env, const netctl_endpoint_t *endpoint, int type) {
  const char *failed;
  int fd = socket_in_netns(endpoint->netns, endpoint->family, type, &failed);
  if (fd < 0) netctl_throw_errno(env, errno, failed, endpoint->netns[0] ? endpoint->netns : NULL);
  return fd;
}
