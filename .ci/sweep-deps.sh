#!/usr/bin/env bash
# The sweeper's mount tests (crates/sweep/tests/mounts.rs) need util-linux's `unshare`
# and `mount`; install them where a minimal image lacks them.
set -euo pipefail
missing=()
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v mount >/dev/null 2>&1 || missing+=(mount)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update
    apt-get install -y "${missing[@]}"
  else
    echo "sweep-deps: missing ${missing[*]} and cannot install (not root or no apt-get)" >&2
  fi
fi
