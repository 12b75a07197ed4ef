#!/usr/bin/env bash
# Installs Debian's `prometheus` package when promtool or the server is missing:
# make-video's metrics test reads /metrics with Prometheus's own parsers (promtool), the
# sweep's textfile test lints its file with `promtool check metrics`, the rules stage
# runs `promtool check rules` / `promtool test rules`, and make-video's Prometheus test
# starts a real server (the package's /usr/bin/prometheus) on a free loopback port.
set -euo pipefail
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version 2>&1 | head -1
prometheus --version 2>&1 | head -1
