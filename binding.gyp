{
  "targets": [
    {
      "target_name": "netctl_native",
      "sources": [
        "native/addon.c", "native/answers.c", "native/esp.c", "native/esp_napi.c", "native/flow.c", "native/fslock.c", "native/netns.c", "native/offload.c", "native/poller.c",
        "native/rlimit.c", "native/socket.c", "native/tap.c", "native/tcp_listen.c", "native/udp.c"
      ],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
