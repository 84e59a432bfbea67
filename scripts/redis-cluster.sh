#!/bin/sh
# scripts/redis-cluster.sh start|stop|status|start-node --dir DIR [--masters N] [--node I]
#
# A Redis Cluster of N masters (default 3, no replicas) on 127.0.0.1 free
# ports for development and tests, with Debian's redis-server (7.0) and
# redis-cli. Every node's config, nodes.conf, log and PID file live in DIR;
# nothing is persisted (appendonly no, save ""). Every master serves its
# own slots while another is down (cluster-require-full-coverage no: with
# Redis's default, yes, one silent master makes every master answer
# CLUSTERDOWN to every key; README "Redis Cluster: a master that stops
# answering").
#
#   start       writes DIR/redis-I.conf (I = 1..N) with a free client port
#               and a free cluster bus port each, starts the nodes, joins
#               them with `redis-cli --cluster create ... --cluster-replicas 0`,
#               waits until every node says cluster_state:ok (at most
#               REDIS_CLUSTER_START_TIMEOUT s, default 60; else stops them and
#               fails), then prints the client ports, one a line, and writes
#               DIR/redis-I.pid and DIR/ports.
#   stop        SIGTERM to each PID in DIR/redis-I.pid (checked to be that
#               node's redis-server), waits up to 10 s, then SIGKILL. Never by name.
#   status      prints "running I PID PORT" or "stopped I" per node; exit 0
#               only when all are running.
#   start-node  starts node I again with its config and nodes.conf (after a
#               kill): same port, same cluster identity. --node I required.
#
# Facts it follows: /work/shared/ENGINES.md (Redis 7.0.15 Cluster).
set -eu
TIMEOUT=${REDIS_CLUSTER_START_TIMEOUT:-60}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}

usage() { echo "usage: $0 start|stop|status|start-node --dir DIR [--masters N] [--node I]" >&2; exit 2; }
[ $# -ge 1 ] || usage
cmd=$1; shift
DIR=""; MASTERS=3; NODE=""
while [ $# -ge 2 ]; do
  case $1 in
    --dir) DIR=$2 ;;
    --masters) MASTERS=$2 ;;
    --node) NODE=$2 ;;
    *) usage ;;
  esac
  shift 2
done
[ $# -eq 0 ] && [ -n "$DIR" ] || usage
case $MASTERS in ''|*[!0-9]*) usage ;; esac
[ "$MASTERS" -ge 3 ] && [ "$MASTERS" -le 32 ] || { echo "redis-cluster.sh: --masters must be 3..32 (a cluster needs 3)" >&2; exit 2; }
[ "$cmd" = start ] && mkdir -p "$DIR"
[ -d "$DIR" ] || { echo "redis-cluster.sh: no directory $DIR" >&2; exit 1; }
DIR=$(cd "$DIR" && pwd)

# a free loopback port (bound then released: the window is short and the
# start fails loudly if another process takes it meanwhile)
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# number of nodes this directory holds (start: --masters; later: the configs)
node_count() {
  n=0
  while [ -f "$DIR/redis-$((n + 1)).conf" ]; do n=$((n + 1)); done
  echo "$n"
}

# node I's PID if it is alive and is this node's redis-server; empty otherwise
live_pid() {
  f="$DIR/redis-$1.pid"
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  case $pid in ''|*[!0-9]*) return 0 ;; esac
  st=$(ps -o stat= -p "$pid" 2>/dev/null || true)
  case $st in ''|Z*) return 0 ;; esac
  port=$(cat "$DIR/redis-$1.port" 2>/dev/null || echo none)
  # started as "redis-server DIR/redis-I.conf"; once up it rewrites its
  # title to "redis-server 127.0.0.1:PORT [cluster]"
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  case $cmdline in
    *redis-server*"$DIR/redis-$1.conf"*|*redis-server*":$port "*) echo "$pid" ;;
  esac
  return 0
}

start_node() { # I
  i=$1
  : >"$DIR/redis-$i.log"
  setsid nohup "$REDIS_SERVER" "$DIR/redis-$i.conf" >>"$DIR/redis-$i.log" 2>&1 </dev/null &
  echo $! >"$DIR/redis-$i.pid"
}

stop_node() { # I
  pid=$(live_pid "$1")
  [ -n "$pid" ] || return 0
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  t=0
  while [ $t -lt 100 ] && [ -n "$(live_pid "$1")" ]; do sleep 0.1; t=$((t + 1)); done
  [ -z "$(live_pid "$1")" ] || kill -KILL "$pid" 2>/dev/null || true
}

stop_all() {
  n=$(node_count)
  i=1
  while [ $i -le "$n" ]; do stop_node $i; i=$((i + 1)); done
}

# waits until node I answers PING (at most the remaining start time)
wait_ping() {
  port=$(cat "$DIR/redis-$1.port")
  while [ "$(date +%s)" -lt "$deadline" ]; do
    [ "$("$REDIS_CLI" -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && return 0
    [ -n "$(live_pid "$1")" ] || { echo "redis-cluster.sh: node $1 exited (see $DIR/redis-$1.log)" >&2; return 1; }
    sleep 0.1
  done
  echo "redis-cluster.sh: node $1 did not answer PING in ${TIMEOUT}s" >&2
  return 1
}

cluster_ok() { # I
  port=$(cat "$DIR/redis-$1.port")
  "$REDIS_CLI" -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

start() {
  command -v "$REDIS_SERVER" >/dev/null || { echo "redis-cluster.sh: no redis-server (scripts/install-deps.sh)" >&2; return 1; }
  [ "$(node_count)" -eq 0 ] || { echo "redis-cluster.sh: $DIR already holds a cluster" >&2; return 1; }
  deadline=$(( $(date +%s) + TIMEOUT ))
  trap 'stop_all' EXIT
  i=1; addrs=""
  while [ $i -le "$MASTERS" ]; do
    port=$(free_port); bus=$(free_port)
    echo "$port" >"$DIR/redis-$i.port"
    cat >"$DIR/redis-$i.conf" <<CONF
bind 127.0.0.1
port $port
cluster-enabled yes
cluster-port $bus
cluster-config-file $DIR/nodes-$i.conf
cluster-node-timeout 5000
cluster-require-full-coverage no
appendonly no
save ""
dir $DIR
daemonize no
protected-mode yes
CONF
    start_node $i
    addrs="$addrs 127.0.0.1:$port"
    i=$((i + 1))
  done
  i=1
  while [ $i -le "$MASTERS" ]; do wait_ping $i; i=$((i + 1)); done
  # shellcheck disable=SC2086
  "$REDIS_CLI" --cluster create $addrs --cluster-replicas 0 --cluster-yes >"$DIR/create.log" 2>&1 \
    || { echo "redis-cluster.sh: cluster create failed (see $DIR/create.log)" >&2; return 1; }
  i=1
  while [ $i -le "$MASTERS" ]; do
    until cluster_ok $i; do
      [ "$(date +%s)" -lt "$deadline" ] || { echo "redis-cluster.sh: node $i not cluster_state:ok in ${TIMEOUT}s" >&2; return 1; }
      sleep 0.1
    done
    i=$((i + 1))
  done
  trap - EXIT
  : >"$DIR/ports"
  i=1
  while [ $i -le "$MASTERS" ]; do cat "$DIR/redis-$i.port" | tee -a "$DIR/ports"; i=$((i + 1)); done
}

restart_node() {
  case $NODE in ''|*[!0-9]*) usage ;; esac
  [ -f "$DIR/redis-$NODE.conf" ] || { echo "redis-cluster.sh: no node $NODE in $DIR" >&2; return 1; }
  [ -z "$(live_pid "$NODE")" ] || { echo "redis-cluster.sh: node $NODE is running" >&2; return 1; }
  deadline=$(( $(date +%s) + TIMEOUT ))
  start_node "$NODE"
  wait_ping "$NODE"
}

status() {
  n=$(node_count); rc=0; i=1
  [ "$n" -gt 0 ] || { echo stopped; return 1; }
  while [ $i -le "$n" ]; do
    pid=$(live_pid $i)
    if [ -n "$pid" ]; then echo "running $i $pid $(cat "$DIR/redis-$i.port")"; else echo "stopped $i"; rc=1; fi
    i=$((i + 1))
  done
  return $rc
}

case $cmd in
  start) start ;;
  stop) stop_all ;;
  status) status ;;
  start-node) restart_node ;;
  *) usage ;;
esac
