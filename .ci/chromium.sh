#!/usr/bin/env bash
# Installs Debian's chromium when it is missing: the simulator's HTML report is tested in
# a real headless browser (sim/tests/browser.rs). Idempotent and quiet: one line out.
set -euo pipefail

version() { chromium --version 2>/dev/null | head -n 1; }

if command -v chromium >/dev/null 2>&1; then
  echo "chromium present: $(version)"
  exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >/dev/null
"${sudo[@]}" apt-get install -y -qq chromium >/dev/null
echo "chromium installed: $(version)"
