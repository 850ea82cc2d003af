/*
 * The tiny HTTP server a task runs in the services benchmark (bench/services.ts
 * compiles it with cc into its temporary directory): `http-task PORT NAME`
 * answers every request with NAME and closes the connection at once (the
 * server closes first, so the clients keep no TIME_WAIT and never run out of
 * ports). `GET /count` answers how many other requests it served, without
 * counting itself. One thread, epoll, nonblocking sockets: it costs the
 * machine far less per connection than the kernel's TCP path does, so the
 * figures are the network's, not the server's. Prints `ready` once it
 * listens. bench/http-task.ts is the same server in Node (`--server node`).
 *
 * `http-task PORT NAME keep-alive` (the ingress benchmark, bench/ingress.ts)
 * keeps a connection open after a request that does not ask to close, as
 * HTTP/1.1 does by default, so a client can send many requests on one
 * connection; a request with `Connection: close` is still answered and
 * closed at once, the server closing first.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 65536
#define HEAD_MAX 2048

static char *heads[MAX_FDS];
static size_t lengths[MAX_FDS];
static unsigned long long served;
static int keep_alive;

static void drop(int fd) {
  free(heads[fd]);
  heads[fd] = NULL;
  lengths[fd] = 0;
  close(fd);
}

/* Answers one request; returns whether the connection stays open (keep-alive mode and the client did not ask to close). */
static int answer(int fd, const char *body, int stay) {
  char out[512];
  int n = snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nConnection: %s\r\n\r\n%s", strlen(body),
                   stay ? "keep-alive" : "close", body);
  /* A socket's send buffer takes a few hundred bytes at once, as the client reads each answer before its next request. */
  ssize_t sent = send(fd, out, (size_t)n, MSG_NOSIGNAL);
  if (stay && sent == (ssize_t)n) return 1;
  drop(fd);
  return 0;
}

/* Whether the request head (up to its blank line) asks to keep the connection: only in keep-alive mode, and not with `Connection: close`. */
static int stays(const char *head, const char *end) {
  if (!keep_alive) return 0;
  for (const char *line = strstr(head, "\r\n"); line != NULL && line < end; line = strstr(line + 2, "\r\n")) {
    if (strncasecmp(line + 2, "Connection:", 11) != 0) continue;
    const char *value = line + 13;
    while (*value == ' ' || *value == '\t') value++;
    return strncasecmp(value, "close", 5) != 0;
  }
  return 1;
}

static void readable(int fd, const char *response_body) {
  if (fd >= MAX_FDS) {
    close(fd);
    return;
  }
  if (heads[fd] == NULL) {
    heads[fd] = malloc(HEAD_MAX + 1);
    if (heads[fd] == NULL) {
      close(fd);
      return;
    }
  }
  for (;;) {
    ssize_t got = recv(fd, heads[fd] + lengths[fd], HEAD_MAX - lengths[fd], 0);
    if (got > 0) {
      lengths[fd] += (size_t)got;
      heads[fd][lengths[fd]] = '\0';
      char *end;
      while ((end = strstr(heads[fd], "\r\n\r\n")) != NULL) {
        int stay = stays(heads[fd], end);
        if (strncmp(heads[fd], "GET /count ", 11) == 0) {
          char body[32];
          snprintf(body, sizeof body, "%llu\n", served);
          stay = answer(fd, body, stay);
        } else {
          served++;
          stay = answer(fd, response_body, stay);
        }
        if (!stay) return;
        /* Whatever came after this request's head is the start of the next one. */
        size_t used = (size_t)(end + 4 - heads[fd]);
        memmove(heads[fd], heads[fd] + used, lengths[fd] - used + 1);
        lengths[fd] -= used;
      }
      if (lengths[fd] >= HEAD_MAX) {
        drop(fd);
        return;
      }
      continue;
    }
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (got < 0 && errno == EINTR) continue;
    drop(fd); /* closed or failed before a whole request */
    return;
  }
}

int main(int argc, char **argv) {
  if (argc < 3 || (argc > 3 && strcmp(argv[3], "keep-alive") != 0)) {
    fprintf(stderr, "usage: http-task PORT NAME [keep-alive]\n");
    return 2;
  }
  keep_alive = argc > 3;
  char body[256];
  snprintf(body, sizeof body, "%s\n", argv[2]);
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])), .sin_addr = {htonl(INADDR_ANY)}};
  if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 4096) != 0) {
    perror("listen");
    return 1;
  }
  int poller = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event event = {.events = EPOLLIN, .data.fd = listener};
  epoll_ctl(poller, EPOLL_CTL_ADD, listener, &event);
  printf("ready\n");
  fflush(stdout);
  struct epoll_event events[256];
  for (;;) {
    int n = epoll_wait(poller, events, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      perror("epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd != listener) {
        readable(fd, body);
        continue;
      }
      for (;;) {
        int client = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (client < 0) break;
        setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ce = {.events = EPOLLIN, .data.fd = client};
        if (epoll_ctl(poller, EPOLL_CTL_ADD, client, &ce) != 0) {
          close(client);
          continue;
        }
        /* The request often came with the handshake's last ACK: read it now, saving a wakeup. */
        readable(client, body);
      }
    }
  }
}
