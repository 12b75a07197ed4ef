#!/usr/bin/env bash
# Sourced by .ci/run: a real redis-server for backstop-redis's tests, on a free loopback
# port, without persistence. Exports BACKSTOP_REDIS_URL; `redis_stop` (set as an EXIT
# trap) stops it. Installs Debian's redis-server when it is missing.

redis_start() {
  if ! command -v redis-server >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  fi
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
    || shuf -i 20000-60000 -n 1)
  BACKSTOP_REDIS_PIDFILE=$(mktemp -u /tmp/backstop-redis.XXXXXX.pid)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$BACKSTOP_REDIS_PIDFILE" --logfile /dev/null
  for _ in $(seq 100); do
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
  redis-cli -p "$port" ping | grep -q PONG || { echo "redis-server did not start" >&2; return 1; }
  export BACKSTOP_REDIS_URL="redis://127.0.0.1:$port"
  echo "redis-server $(redis-server --version | awk '{print $3}') at $BACKSTOP_REDIS_URL"
}

redis_stop() {
  if [ -n "${BACKSTOP_REDIS_PIDFILE:-}" ] && [ -f "$BACKSTOP_REDIS_PIDFILE" ]; then
    kill "$(cat "$BACKSTOP_REDIS_PIDFILE")" 2>/dev/null || true
    rm -f "$BACKSTOP_REDIS_PIDFILE"
  fi
}
