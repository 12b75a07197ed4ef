#!/usr/bin/env bash
# Sourced by .ci/run: the real Redis parts backstop-redis's tests use, on free loopback
# ports, without persistence. `redis_start` starts a redis-server (exports
# BACKSTOP_REDIS_URL); `redis_cluster_start` a 3-primary Redis Cluster (exports
# BACKSTOP_REDIS_CLUSTER_URL, about 2 s); `redis_stop` (set as an EXIT trap) stops them
# all. The tests start their own Sentinel arrangement (a primary, a replica, three
# sentinels: they fail it over) and their own TLS server (with a CA they make with
# openssl), through backstop-testkit's `redis` module; this script makes sure
# redis-server, redis-cli and openssl are there (Debian's redis-server and openssl).

BACKSTOP_REDIS_PIDFILES=()

redis_tools() {
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  fi
  if ! command -v openssl >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq openssl >/dev/null
  fi
}

# A loopback port nobody listens on now; with an argument, one whose port + 10000 (a
# cluster node's bus port) is free too.
redis_free_port() {
  python3 - "$@" <<'PY'
import socket, sys
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(200):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    if len(sys.argv) == 1 or (port + 10000 <= 65535 and free(port + 10000)):
        print(port); break
PY
}

# redis_server PORT [ARGS...]: a daemonized redis-server, its pidfile remembered.
redis_server() {
  local port=$1; shift
  local pidfile
  pidfile=$(mktemp -u /tmp/backstop-redis.XXXXXX.pid)
  BACKSTOP_REDIS_PIDFILES+=("$pidfile")
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$pidfile" --logfile /dev/null "$@"
  for _ in $(seq 100); do
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  echo "redis-server did not start on port $port" >&2
  return 1
}

redis_start() {
  redis_tools
  local port
  port=$(redis_free_port)
  redis_server "$port" || return 1
  export BACKSTOP_REDIS_URL="redis://127.0.0.1:$port"
  echo "redis-server $(redis-server --version | awk '{print $3}') at $BACKSTOP_REDIS_URL"
}

redis_cluster_start() {
  redis_tools
  local dir nodes=() port
  dir=$(mktemp -d /tmp/backstop-cluster.XXXXXX)
  for _ in 1 2 3; do
    port=$(redis_free_port bus)
    redis_server "$port" --cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf" \
      --cluster-node-timeout 2000 --dir "$dir" || return 1
    nodes+=("127.0.0.1:$port")
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null \
    || { echo "redis-cli --cluster create failed" >&2; return 1; }
  for node in "${nodes[@]}"; do
    for _ in $(seq 200); do
      redis-cli -p "${node##*:}" cluster info 2>/dev/null | grep -q cluster_state:ok && break
      sleep 0.1
    done
    redis-cli -p "${node##*:}" cluster info | grep -q cluster_state:ok \
      || { echo "the cluster was not ok at $node" >&2; return 1; }
  done
  local joined
  joined=$(IFS=,; echo "${nodes[*]}")
  export BACKSTOP_REDIS_CLUSTER_URL="redis+cluster://$joined"
  echo "Redis Cluster of 3 primaries at $BACKSTOP_REDIS_CLUSTER_URL"
}

redis_stop() {
  local pidfile
  for pidfile in "${BACKSTOP_REDIS_PIDFILES[@]}"; do
    if [ -f "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
}
