/* Moving the calling thread between network namespaces (netns.c), for the parts that make sockets. */
#ifndef NETCTL_NETNS_H
#define NETCTL_NETNS_H

#define NETCTL_SELF_NETNS "/proc/thread-self/ns/net"

/* The step of netctl_netns_enter that failed. */
typedef enum {
  NETCTL_NETNS_ENTERED = 0,
  NETCTL_NETNS_OPEN_SELF,   /* open(NETCTL_SELF_NETNS) */
  NETCTL_NETNS_OPEN_TARGET, /* open(path) */
  NETCTL_NETNS_SETNS,       /* setns(path) */
} netctl_netns_step_t;

/* Moves the calling thread into the network namespace at `path`; *saved gets an fd of the one it
 * left, for netctl_netns_restore. On failure returns the step, with errno set and nothing open. */
netctl_netns_step_t netctl_netns_enter(const char *path, int *saved);
/* Returns to the namespace saved by netctl_netns_enter and closes the fd; a thread that cannot go
 * back would do every later kernel call in the wrong namespace, so that is fatal. */
void netctl_netns_restore(int saved);

#endif
