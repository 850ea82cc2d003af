/*
 * The client of the services benchmark's like-for-like connections figure
 * (bench/services.ts compiles it with cc): `conn-client PORT SECONDS
 * CONCURRENCY THREADS ADDRESS...` keeps CONCURRENCY connections in flight
 * for SECONDS, split over THREADS threads, each connection a fresh TCP
 * connection with one HTTP request that the server answers and closes. Every
 * thread hands its new connections to the addresses in turn, so a list of
 * task addresses is spread exactly as a service's VIP spreads connections
 * over those tasks (wrk cannot: a wrk thread has one address). Prints one
 * JSON line: requests, duration, errors, latency p50 and p99.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 65536
#define MAX_SAMPLES (1 << 22)

static struct sockaddr_in *targets;
static int target_count;
static int port;
static double seconds;
static const char REQUEST[] = "GET / HTTP/1.1\r\nHost: task\r\nConnection: close\r\n\r\n";

struct worker {
  int index;
  int connections;
  unsigned long long requests;
  unsigned long long errors;
  unsigned *latencies_us; /* one per request, up to MAX_SAMPLES per worker */
  size_t samples;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Per fd: when its connect began, and whether the request went out. */
static __thread double started[MAX_FDS];
static __thread char sent[MAX_FDS];

static int open_one(int poller, unsigned long long *next) {
  const struct sockaddr_in *to = &targets[(*next)++ % (unsigned long long)target_count];
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || fd >= MAX_FDS) {
    if (fd >= 0) close(fd);
    return -1;
  }
  started[fd] = now();
  sent[fd] = 0;
  if (connect(fd, (const struct sockaddr *)to, sizeof *to) != 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  struct epoll_event event = {.events = EPOLLOUT | EPOLLIN, .data.fd = fd};
  epoll_ctl(poller, EPOLL_CTL_ADD, fd, &event);
  return fd;
}

static void *run(void *arg) {
  struct worker *w = arg;
  int poller = epoll_create1(EPOLL_CLOEXEC);
  unsigned long long next = (unsigned long long)w->index; /* threads start on different addresses */
  double end = now() + seconds;
  int open = 0;
  for (int i = 0; i < w->connections; i++) open += open_one(poller, &next) >= 0;
  struct epoll_event events[256];
  char buffer[4096];
  while (now() < end) {
    int n = epoll_wait(poller, events, 256, 100);
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      int done = 0, failed = 0;
      if (events[i].events & EPOLLERR) failed = 1;
      else if (!sent[fd] && (events[i].events & EPOLLOUT)) {
        if (send(fd, REQUEST, sizeof REQUEST - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof REQUEST - 1)) {
          sent[fd] = 1;
          struct epoll_event event = {.events = EPOLLIN, .data.fd = fd};
          epoll_ctl(poller, EPOLL_CTL_MOD, fd, &event);
        } else failed = 1;
      } else if (events[i].events & (EPOLLIN | EPOLLHUP)) {
        for (;;) {
          ssize_t got = recv(fd, buffer, sizeof buffer, 0);
          if (got > 0) continue;
          if (got == 0) done = 1; /* the server answered and closed */
          else if (errno != EAGAIN && errno != EWOULDBLOCK) failed = 1;
          break;
        }
      }
      if (!done && !failed) continue;
      if (done) {
        w->requests++;
        if (w->samples < MAX_SAMPLES) w->latencies_us[w->samples++] = (unsigned)((now() - started[fd]) * 1e6);
      } else w->errors++;
      close(fd);
      open--;
      open += open_one(poller, &next) >= 0;
    }
    while (open < w->connections) { /* a connect refused at once */
      int fd = open_one(poller, &next);
      if (fd < 0) {
        w->errors++;
        break;
      }
      open++;
    }
  }
  close(poller);
  return NULL;
}

static int by_value(const void *a, const void *b) {
  unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: conn-client PORT SECONDS CONCURRENCY THREADS ADDRESS...\n");
    return 2;
  }
  port = atoi(argv[1]);
  seconds = atof(argv[2]);
  int concurrency = atoi(argv[3]);
  int threads = atoi(argv[4]);
  target_count = argc - 5;
  targets = calloc((size_t)target_count, sizeof *targets);
  for (int i = 0; i < target_count; i++) {
    targets[i].sin_family = AF_INET;
    targets[i].sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, argv[5 + i], &targets[i].sin_addr) != 1) {
      fprintf(stderr, "not an IPv4 address: %s\n", argv[5 + i]);
      return 2;
    }
  }
  struct worker *workers = calloc((size_t)threads, sizeof *workers);
  pthread_t *ids = calloc((size_t)threads, sizeof *ids);
  double begun = now();
  for (int i = 0; i < threads; i++) {
    workers[i].index = i;
    workers[i].connections = concurrency / threads + (i < concurrency % threads);
    workers[i].latencies_us = malloc(MAX_SAMPLES * sizeof(unsigned));
    pthread_create(&ids[i], NULL, run, &workers[i]);
  }
  unsigned long long requests = 0, errors = 0;
  size_t samples = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(ids[i], NULL);
    requests += workers[i].requests;
    errors += workers[i].errors;
    samples += workers[i].samples;
  }
  double duration = now() - begun;
  unsigned *all = malloc((samples + 1) * sizeof(unsigned));
  size_t at = 0;
  for (int i = 0; i < threads; i++) {
    memcpy(all + at, workers[i].latencies_us, workers[i].samples * sizeof(unsigned));
    at += workers[i].samples;
  }
  qsort(all, samples, sizeof(unsigned), by_value);
  unsigned p50 = samples ? all[samples / 2] : 0, p99 = samples ? all[samples * 99 / 100] : 0;
  printf("{\"requests\":%llu,\"durationUs\":%.0f,\"errors\":%llu,\"p50Us\":%u,\"p99Us\":%u}\n", requests, duration * 1e6, errors, p50, p99);
  return 0;
}
