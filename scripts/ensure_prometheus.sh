#!/usr/bin/env bash
# Make Prometheus and promtool available for the test suite (Debian's `prometheus` package ships both)
# and print the directory that holds them on stdout. Tests start their own servers on loopback.
set -euo pipefail

log() { echo "ensure_prometheus: $*" >&2; }

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  dirname "$(command -v prometheus)"; exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  log "Prometheus is not installed and this user cannot install it: apt-get install prometheus"
  exit 1
fi
log "installing Prometheus from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# The package's own service is not wanted: tests run private servers on loopback ports.
apt-get install -y -qq --no-install-recommends prometheus >&2
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus >&2 || true
fi
dirname "$(command -v prometheus)"
