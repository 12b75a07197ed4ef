#!/usr/bin/env bash
# Installs promtool (Debian's `prometheus` package) when missing: the reference
# service's metrics test reads its /metrics with Prometheus's own OpenMetrics parser.
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
  promtool --version 2>&1 | head -1
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
promtool --version 2>&1 | head -1
