/*
 * The least a user-space VTEP can do per frame, as a reference for the
 * overlay benchmark's latency and small-packet figures (bench/contenders.ts
 * compiles it with cc): `vtep-floor TAP-NAME PEER-IPV4 PORT VNI` makes a TAP,
 * binds UDP PORT, and moves every frame TAP → one VXLAN datagram to the one
 * peer, and every datagram → its frame on the TAP. One blocking epoll, one
 * read and one send per frame, no batching, no table, no checks beyond the
 * VXLAN header: whatever per-packet time a real VTEP spends above this is its
 * own; what this costs over the kernel's vxlan is the price of leaving the
 * kernel (wake-ups, system calls, copies) on this machine.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define VXLAN_HEADER 8
#define MAX_FRAME 65536

static void die(const char *what) {
  perror(what);
  exit(1);
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: vtep-floor TAP-NAME PEER-IPV4 PORT VNI\n");
    return 2;
  }
  int tap = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (tap < 0) die("open /dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
  if (ioctl(tap, TUNSETIFF, &ifr) < 0) die("TUNSETIFF");

  int port = atoi(argv[3]);
  uint32_t vni = (uint32_t)strtoul(argv[4], NULL, 10);
  struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, argv[2], &peer.sin_addr) != 1) die("peer address");
  int udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (udp < 0) die("socket");
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_ANY)};
  if (bind(udp, (struct sockaddr *)&local, sizeof local) < 0) die("bind");

  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = tap};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, tap, &ev) < 0) die("epoll tap");
  ev.data.fd = udp;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, udp, &ev) < 0) die("epoll udp");

  /* Flags 0x08 (VNI valid), the VNI in bytes 4-6 (RFC 7348 section 5). */
  uint8_t header[VXLAN_HEADER] = {0x08, 0, 0, 0, (uint8_t)(vni >> 16), (uint8_t)(vni >> 8), (uint8_t)vni, 0};
  static uint8_t frame[MAX_FRAME];
  static uint8_t datagram[MAX_FRAME];
  struct iovec out[2] = {{.iov_base = header, .iov_len = VXLAN_HEADER}, {.iov_base = frame}};
  struct msghdr message = {.msg_name = &peer, .msg_namelen = sizeof peer, .msg_iov = out, .msg_iovlen = 2};
  printf("ready\n");
  fflush(stdout);

  struct epoll_event events[2];
  for (;;) {
    int ready = epoll_wait(ep, events, 2, -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < ready; i++) {
      if (events[i].data.fd == tap) {
        /* One frame per wake-up: epoll is level-triggered, so the next one wakes it again. */
        ssize_t length = read(tap, frame, sizeof frame);
        if (length <= 0) continue;
        out[1].iov_len = (size_t)length;
        sendmsg(udp, &message, 0);
      } else {
        ssize_t length = recv(udp, datagram, sizeof datagram, 0);
        if (length <= VXLAN_HEADER || (datagram[0] & 0x08) == 0) continue;
        /* Dropped when it fails, as a VTEP would (a TAP not up yet gives EIO). */
        (void)!write(tap, datagram + VXLAN_HEADER, (size_t)length - VXLAN_HEADER);
      }
    }
  }
}
