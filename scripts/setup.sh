#!/usr/bin/env bash
# Install what netproxy and its tests need on a fresh Debian/Ubuntu machine:
# the kernel tools (as root, with apt) and the package itself with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=""
  for tool in iptables-legacy-restore iptables-nft-restore ip nft conntrack socat chromium dot; do
    command -v "$tool" >/dev/null || missing=yes
  done
  if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
      iptables iproute2 nftables conntrack socat chromium graphviz >/dev/null
  fi
elif ! command -v iptables-restore >/dev/null; then
  echo "note: not root or no apt-get; install iptables, iproute2, nftables, conntrack, socat, chromium, graphviz yourself" >&2
fi
# dask: netproxy audit --engine dask (and its test, which starts a real scheduler and workers)
python3 -m pip install -q --disable-pip-version-check -e '.[test,dask]'
