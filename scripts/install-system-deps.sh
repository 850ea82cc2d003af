#!/usr/bin/env bash
# System packages netctl and its tests use: iproute2 (ip, bridge), nftables,
# conntrack (the load balancer forgets flows of tasks that left), util-linux
# (nsenter, prlimit), ping, the clients the tests drive (openssl
# makes the TLS test certificates, python3 sends hand-made frames), gcc and
# libssl-dev (the ESP code is built once more under sanitizers), and the
# reference CNI plugins (portmap, bandwidth) that chain after netctl-cni, and
# a real Docker daemon (docker.io: dockerd, containerd, runc, the docker CLI)
# with busybox-static as the image it runs, for the Docker plugin tests.
set -euo pipefail
packages=(iproute2 nftables conntrack util-linux iputils-ping iperf3 bind9-dnsutils curl etcd-server etcd-client tshark dnsmasq-base dnsperf openssl libssl-dev gcc python3 containernetworking-plugins docker.io busybox-static)
if [ "$(id -u)" -ne 0 ]; then echo "run as root (it installs Debian packages)" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q "${packages[@]}"
