#!/usr/bin/env bash
# Debian packages the overlay benchmark (`npm run bench`) compares netctl with:
# iperf3 for the figures, etcd for netctl's store, and the contenders'
# tunnels, perf for `npm run bench:profile`, wrk for `npm run bench:services`
# and `bench:ingress`, and HAProxy for `bench:ingress`. None of them starts a
# service by itself, but for HAProxy's under systemd, whose default
# configuration listens on nothing (the bench runs a process of its own).
# Not needed by CI.
set -euo pipefail
packages=(iperf3 iproute2 util-linux iputils-ping etcd-server etcd-client openssl wireguard-go wireguard-tools tinc openvpn nebula linux-perf wrk haproxy)
if [ "$(id -u)" -ne 0 ]; then echo "run as root (it installs Debian packages)" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"
