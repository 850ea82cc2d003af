/* Sockets made in any network namespace (socket.c): shared by udp.c and tcp_listen.c. */
#ifndef NETCTL_SOCKET_H
#define NETCTL_SOCKET_H
#include <netinet/in.h>
#include <sys/socket.h>

#include "addon.h"

typedef union {
  struct sockaddr sa;
  struct sockaddr_in in4;
  struct sockaddr_in6 in6;
} netctl_addr_t;

/* Parses `text` for a socket of `family`; an IPv4 address on an IPv6 socket
 * becomes v4-mapped. Returns the sockaddr length, 0 if unparseable. */
socklen_t netctl_parse_address(int family, const char *text, uint16_t port, netctl_addr_t *out);

/* Where a socket is made and bound: udpOpen's and tcpListen's first four arguments. */
typedef struct {
  char netns[4096]; /* "" for the calling thread's own namespace */
  int family;       /* AF_INET or AF_INET6 */
  netctl_addr_t addr;
  socklen_t addr_len;
} netctl_endpoint_t;

/* Reads the 5 arguments of udpOpen and tcpListen into argv, and the first four, (netnsPath, family,
 * address, port), into `endpoint`. Throws (TypeError(usage) when fewer are given) and returns false
 * when they do not fit. */
bool netctl_endpoint_args(napi_env env, napi_callback_info info, napi_value argv[5], const char *usage,
                          netctl_endpoint_t *endpoint);

/* A non-blocking, close-on-exec socket(2) of `type` made inside the endpoint's namespace, which it
 * stays in. Returns the fd, or throws and returns -1. */
int netctl_endpoint_socket(napi_env env, const netctl_endpoint_t *endpoint, int type);

#endif
