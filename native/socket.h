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

/* Reads the arguments udpOpen and tcpListen start with: (netnsPath, family, address, port).
 * Throws and returns false when they do not fit. */
bool netctl_endpoint_args(napi_env env, const napi_value *argv, char *netns, size_t netns_size, int *family,
                          netctl_addr_t *addr, socklen_t *addr_len);

/* A non-blocking, close-on-exec socket(2) made inside the namespace at `netns` ("" = the calling
 * thread's own), which it stays in. Returns the fd, or -1 with errno set and *failed naming the call. */
int netctl_socket_in_netns(const char *netns, int domain, int type, const char **failed);

#endif
