/*
 * Network namespace primitives: enter/leave a namespace on the calling
 * thread, create a named namespace the way `ip netns add` does, and open
 * sockets (Node cannot create raw or netlink sockets itself).
 *
 * Only the calling thread changes namespace (setns/unshare with
 * CLONE_NEWNET affect one thread); the thread pool stays where it was.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/nsfs.h>

#include "addon.h"
#include "netns.h"

#define SELF_NETNS NETCTL_SELF_NETNS

/* A path argument: a string that must fit `out` whole. */
static int get_string_arg(napi_env env, napi_value value, char *out, size_t size) {
  size_t len;
  if (!netctl_get_string(env, value, out, size, &len, "expected a string")) return -1;
  if (len >= size - 1) {
    napi_throw_range_error(env, NULL, "string too long");
    return -1;
  }
  return 0;
}

void netctl_netns_restore(int saved_fd) {
  if (setns(saved_fd, CLONE_NEWNET) != 0) {
    napi_fatal_error("netctl netns", NAPI_AUTO_LENGTH, "cannot return to the original network namespace",
                     NAPI_AUTO_LENGTH);
  }
  close(saved_fd);
}

netctl_netns_step_t netctl_netns_enter(const char *path, int *saved) {
  *saved = open(SELF_NETNS, O_RDONLY | O_CLOEXEC);
  if (*saved < 0) return NETCTL_NETNS_OPEN_SELF;
  int target = open(path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int err = errno;
    close(*saved);
    errno = err;
    return NETCTL_NETNS_OPEN_TARGET;
  }
  if (setns(target, CLONE_NEWNET) != 0) {
    int err = errno;
    close(target);
    close(*saved);
    errno = err;
    return NETCTL_NETNS_SETNS;
  }
  close(target);
  return NETCTL_NETNS_ENTERED;
}

/* netnsEnter(path) -> savedFd: moves the calling thread into the namespace at
 * path and returns an fd of the namespace it was in, for netnsRestore. */
static napi_value netns_enter(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char path[4096];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || get_string_arg(env, argv[0], path, sizeof path) != 0) return NULL;
  int saved;
  switch (netctl_netns_enter(path, &saved)) {
    case NETCTL_NETNS_ENTERED:
      break;
    case NETCTL_NETNS_OPEN_SELF:
      return netctl_throw_errno(env, errno, "open", SELF_NETNS);
    case NETCTL_NETNS_OPEN_TARGET:
      return netctl_throw_errno(env, errno, "open", path);
    case NETCTL_NETNS_SETNS:
      return netctl_throw_errno(env, errno, "setns", path);
  }
  napi_value result;
  napi_create_int32(env, saved, &result);
  return result;
}

/* netnsRestore(savedFd): returns to the namespace saved by netnsEnter and closes the fd. */
static napi_value netns_restore(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t saved;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || !netctl_get_int32(env, argv[0], &saved, "expected a number")) return NULL;
  netctl_netns_restore(saved);
  return NULL;
}

/* Makes runDir a shared mount point, as iproute2's netns_add does, so that a
 * namespace bind-mounted below it shows up in every mount namespace that
 * shares it (and can be unmounted from all of them at once). */
static int share_run_dir(const char *run_dir) {
  if (mkdir(run_dir, 0755) != 0 && errno != EEXIST) return -1;
  int made_mount_point = 0;
  while (mount("", run_dir, "none", MS_SHARED | MS_REC, NULL) != 0) {
    /* EINVAL: not a mount point yet; bind it to itself once and retry. */
    if (errno != EINVAL || made_mount_point) return -1;
    if (mount(run_dir, run_dir, "none", MS_BIND | MS_REC, NULL) != 0) return -1;
    made_mount_point = 1;
  }
  return 0;
}

/* netnsCreate(runDir, path): creates a new network namespace and pins it by a
 * bind mount on path (a new file below runDir). The calling thread is back in
 * its own namespace when this returns. */
static napi_value netns_create(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char run_dir[4096], path[4096];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || get_string_arg(env, argv[0], run_dir, sizeof run_dir) != 0 ||
      get_string_arg(env, argv[1], path, sizeof path) != 0)
    return NULL;

  if (share_run_dir(run_dir) != 0) return netctl_throw_errno(env, errno, "mount", run_dir);

  int file = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (file < 0) return netctl_throw_errno(env, errno, "open", path);
  close(file);

  int saved = open(SELF_NETNS, O_RDONLY | O_CLOEXEC);
  if (saved < 0) {
    int err = errno;
    unlink(path);
    return netctl_throw_errno(env, err, "open", SELF_NETNS);
  }
  if (unshare(CLONE_NEWNET) != 0) {
    int err = errno;
    close(saved);
    unlink(path);
    return netctl_throw_errno(env, err, "unshare", NULL);
  }
  int err = 0;
  if (mount(SELF_NETNS, path, "none", MS_BIND, NULL) != 0) err = errno;
  netctl_netns_restore(saved);
  if (err != 0) {
    unlink(path);
    return netctl_throw_errno(env, err, "mount", path);
  }
  return NULL;
}

/* netnsUnmount(path): detaches the bind mount that pins a named namespace.
 * Returns false when path was not mounted (EINVAL) or does not exist. */
static napi_value netns_unmount(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char path[4096];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || get_string_arg(env, argv[0], path, sizeof path) != 0) return NULL;
  napi_value result;
  if (umount2(path, MNT_DETACH) != 0) {
    if (errno != EINVAL && errno != ENOENT) return netctl_throw_errno(env, errno, "umount2", path);
    napi_get_boolean(env, false, &result);
    return result;
  }
  napi_get_boolean(env, true, &result);
  return result;
}

/* netnsIsNet(path): true when path is a namespace file of type network. */
static napi_value netns_is_net(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char path[4096];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || get_string_arg(env, argv[0], path, sizeof path) != 0) return NULL;
  int is_net = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    /* NS_GET_NSTYPE fails with ENOTTY on anything that is not an nsfs file. */
    is_net = ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET;
    close(fd);
  }
  napi_value result;
  napi_get_boolean(env, is_net, &result);
  return result;
}

/* socket(domain, type, protocol) -> fd, close-on-exec, in the calling thread's namespace. */
static napi_value socket_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t domain, type, protocol;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || !netctl_get_int32(env, argv[0], &domain, "expected a number") ||
      !netctl_get_int32(env, argv[1], &type, "expected a number") ||
      !netctl_get_int32(env, argv[2], &protocol, "expected a number"))
    return NULL;
  int fd = socket(domain, type | SOCK_CLOEXEC, protocol);
  if (fd < 0) return netctl_throw_errno(env, errno, "socket", NULL);
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

napi_status netctl_register_netns(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"netnsEnter", NULL, netns_enter, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netnsRestore", NULL, netns_restore, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netnsCreate", NULL, netns_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netnsUnmount", NULL, netns_unmount, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netnsIsNet", NULL, netns_is_net, NULL, NULL, NULL, napi_enumerable, NULL},
      {"socket", NULL, socket_open, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
