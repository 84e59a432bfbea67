#!/bin/sh
# scripts/cluster.sh up|down|status --dir DIR [--nodes N]
#
# Several parley nodes on this machine, on the real engines, all on
# 127.0.0.1 free ports, every file in DIR:
#
#   up      starts (each only if it is not running already, so a second `up`
#           changes nothing):
#             - one Kafka broker (scripts/kafka.sh, DIR/kafka), ONLY when
#               `parley serve --help` lists --kafka: the nodes have no use
#               for a broker until they do, and then its address is passed
#               as --kafka;
#             - a three-master Redis Cluster (scripts/redis-cluster.sh,
#               DIR/redis);
#             - one Cassandra node (scripts/cassandra.sh, DIR/cassandra);
#             - N parley nodes (default 1), all on `--store cassandra`
#               (one keyspace): node 1 has every role (the chat and fan-out
#               owner); nodes 2..N are `--roles gateway` in front of it
#               (they read the store, and forward writes to node 1). Every node gets
#               `--node node-I --internal-listen 127.0.0.1:PORT --redis
#               SEEDS --cluster-secret DIR/cluster-secret`, each option only
#               when `parley serve --help` lists it. The secret (32 random
#               bytes, mode 0600) is made once and kept across down and up.
#               N > 1 needs --roles (several full nodes on one store would
#               each own every conversation: two owners of a seq), so
#               without it N > 1 is refused before anything starts.
#           The jars are fetched once into .cache/ (ignored by git; see the
#           engine scripts). Waits until each node answers 200 at /healthz
#           (at most CLUSTER_NODE_TIMEOUT s each, default 120), then prints
#           one gateway URL per node, `ws://127.0.0.1:PORT`, a line each, on
#           stdout and nothing else there. Each node's PID is in
#           DIR/node-I.pid, its log in DIR/node-I.log, the engines' output in
#           DIR/up.log. If anything fails, what this `up` started is
#           stopped again (what ran before is left running) and the exit
#           status is 1.
#   down    stops the parley nodes (SIGTERM, then SIGKILL after
#           CLUSTER_STOP_TIMEOUT s, default 20), then Cassandra, Redis and
#           Kafka, each by the PID its start recorded (checked against the
#           process's command line), never by name. Safe to run twice.
#   status  one line per part: "PART running PID ADDRESS" or "PART stopped";
#           exit 0 only when every part `up` starts is running.
#
# PARLEY_BIN is the server binary (default build/parley of this clone).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PARLEY=${PARLEY_BIN:-$ROOT/build/parley}
NODE_TIMEOUT=${CLUSTER_NODE_TIMEOUT:-120}
STOP_TIMEOUT=${CLUSTER_STOP_TIMEOUT:-20}
MAX_NODES=64   # ports, processes and logs on one machine: a bound, not a design limit

usage() { echo "usage: $0 up|down|status --dir DIR [--nodes N]" >&2; exit 2; }
die() { echo "cluster.sh: $*" >&2; exit 1; }
[ $# -ge 1 ] || usage
cmd=$1; shift
DIR=""; NODES=1
while [ $# -ge 2 ]; do
  case $1 in
    --dir) DIR=$2 ;;
    --nodes) NODES=$2 ;;
    *) usage ;;
  esac
  shift 2
done
[ $# -eq 0 ] && [ -n "$DIR" ] || usage
case $NODES in ''|*[!0-9]*) usage ;; esac
[ "$NODES" -ge 1 ] && [ "$NODES" -le $MAX_NODES ] || die "--nodes must be 1..$MAX_NODES"
# the options of `parley serve` this binary has
has_option() { printf '%s\n' "$HELP" | grep -q -- "^ *$1 "; }
if [ "$cmd" = up ]; then
  # before anything is created or started
  [ -x "$PARLEY" ] || die "no parley binary at $PARLEY (make build, or set PARLEY_BIN)"
  HELP=$("$PARLEY" serve --help 2>&1 || true)
  if [ "$NODES" -gt 1 ] && ! has_option --roles; then
    die "--nodes $NODES needs gateway-only nodes, and $PARLEY serve has no --roles yet: several full nodes on one store would each own every conversation (two owners of a seq); use --nodes 1"
  fi
  mkdir -p "$DIR"
fi
[ -d "$DIR" ] || die "no directory $DIR"
# one spelling of DIR: the PID checks below match it in command lines
DIR=$(cd "$DIR" && pwd)

# a free loopback port (bound then released; a node that loses the race
# fails to start and `up` says so)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# exit 0 when PORT can be bound on 127.0.0.1 now
port_free() { python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1])))' "$1" 2>/dev/null; }
# "CODE BODY" of GET URL: the HTTP status and the body's first line
# ("000 ERROR" when nothing answers in 2 s)
http_get() {
  python3 - "$1" <<'PY' 2>/dev/null || echo "000 no answer"
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=2)
    code, body = r.status, r.read(256)
except urllib.error.HTTPError as e:
    code, body = e.code, e.read(256)
except Exception as e:
    code, body = "000", str(e).encode()
line = body.decode("utf-8", "replace").splitlines()
print(code, line[0] if line else "")
PY
}

# ------------------------------------------------------------ parley nodes

node_count() {
  n=0
  while [ -f "$DIR/node-$((n + 1)).port" ]; do n=$((n + 1)); done
  echo "$n"
}

# node I's PID if it is alive and is this node's parley; empty otherwise
node_pid() {
  f="$DIR/node-$1.pid"
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  case $pid in ''|*[!0-9]*) return 0 ;; esac
  st=$(ps -o stat= -p "$pid" 2>/dev/null || true)
  case $st in ''|Z*) return 0 ;; esac
  # its data directory is on its command line and is this node's alone (the
  # space after it keeps node-1 from matching node-10's)
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- " --data $DIR/node-$1/data " && echo "$pid"
  return 0
}

# The node link's shared secret, made once (0600 from the start: umask in
# a subshell, so it is never readable by others, even briefly); its path.
cluster_secret() {
  f="$DIR/cluster-secret"
  if [ ! -s "$f" ]; then
    (umask 077 && head -c 32 /dev/urandom >"$f.tmp" && mv "$f.tmp" "$f") || die "cannot write $f"
  fi
  echo "$f"
}

start_node() { # I
  i=$1
  if [ -n "$(node_pid "$i")" ]; then return 0; fi
  mkdir -p "$DIR/node-$i/data"
  # the same port as last time when it is still free: URLs kept in clients
  # (parley-cli remembers its server) stay good across down and up
  port=$(cat "$DIR/node-$i.port" 2>/dev/null || true)
  if [ -z "$port" ] || ! port_free "$port"; then port=$(free_port); fi
  iport=$(cat "$DIR/node-$i.internal-port" 2>/dev/null || true)
  if [ -z "$iport" ] || ! port_free "$iport"; then iport=$(free_port); fi
  set -- serve --listen "127.0.0.1:$port" --data "$DIR/node-$i/data"
  if has_option --node; then set -- "$@" --node "node-$i"; fi
  if has_option --internal-listen; then set -- "$@" --internal-listen "127.0.0.1:$iport"; fi
  if has_option --redis; then set -- "$@" --redis "$REDIS_SEEDS"; fi
  if has_option --cluster-secret; then set -- "$@" --cluster-secret "$(cluster_secret)"; fi
  if [ -n "$KAFKA_ADDR" ]; then set -- "$@" --kafka "$KAFKA_ADDR"; fi
  # every node on the one keyspace: node 1 writes it, gateways read it
  set -- "$@" --store cassandra --cassandra "$CASSANDRA_ADDR"
  if [ "$i" != 1 ]; then set -- "$@" --roles gateway; fi
  echo "$port" >"$DIR/node-$i.port"
  echo "$iport" >"$DIR/node-$i.internal-port"
  STARTED_NODES="$i $STARTED_NODES"   # stopped in reverse
  echo "node-$i: $PARLEY $*" >>"$DIR/up.log"
  setsid nohup "$PARLEY" "$@" >>"$DIR/node-$i.log" 2>&1 </dev/null 9>&- &
  echo $! >"$DIR/node-$i.pid"
}

wait_healthy() { # I
  i=$1
  port=$(cat "$DIR/node-$i.port")
  deadline=$(( $(date +%s) + NODE_TIMEOUT ))
  while :; do
    [ -n "$(node_pid "$i")" ] || { tail -n 20 "$DIR/node-$i.log" >&2; echo "cluster.sh: node-$i exited (log: $DIR/node-$i.log)" >&2; return 1; }
    answer=$(http_get "http://127.0.0.1:$port/healthz")
    [ "${answer%% *}" = 200 ] && return 0
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "cluster.sh: node-$i not healthy in ${NODE_TIMEOUT}s: /healthz answers $answer (log: $DIR/node-$i.log)" >&2
      return 1
    fi
    sleep 0.2
  done
}

stop_node() { # I
  pid=$(node_pid "$1")
  [ -n "$pid" ] || { rm -f "$DIR/node-$1.pid"; return 0; }
  kill -CONT "$pid" 2>/dev/null || true   # a stopped process cannot act on SIGTERM
  kill -TERM "$pid" 2>/dev/null || true    # drains: 1012 to its clients, then exits
  t=0
  while [ $t -lt $((STOP_TIMEOUT * 10)) ] && [ -n "$(node_pid "$1")" ]; do sleep 0.1; t=$((t + 1)); done
  if [ -n "$(node_pid "$1")" ]; then
    echo "cluster.sh: node-$1 ($pid) did not stop in ${STOP_TIMEOUT}s; SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    t=0
    while [ $t -lt 100 ] && [ -n "$(node_pid "$1")" ]; do sleep 0.1; t=$((t + 1)); done
  fi
  rm -f "$DIR/node-$1.pid"
}

# ------------------------------------------------------------ the engines

engine_running() { "$ROOT/scripts/$1" status --dir "$DIR/$2" >/dev/null 2>&1; }

start_engines() {
  if [ -n "$WANT_KAFKA" ]; then
    if ! engine_running kafka.sh kafka; then
      STARTED="$STARTED kafka"
      "$ROOT/scripts/kafka.sh" start --dir "$DIR/kafka" >>"$DIR/up.log" 2>&1 9>&- \
        || { tail -n 5 "$DIR/up.log" >&2; return 1; }
    fi
    KAFKA_ADDR="127.0.0.1:$(cat "$DIR/kafka/port")"
  fi
  if ! engine_running redis-cluster.sh redis; then
    # nothing of a stopped cluster is worth keeping (no persistence): a
    # fresh one, after stopping whatever part of the old one still runs
    if [ -d "$DIR/redis" ]; then
      "$ROOT/scripts/redis-cluster.sh" stop --dir "$DIR/redis" >>"$DIR/up.log" 2>&1 || true
      rm -rf "$DIR/redis"
    fi
    STARTED="$STARTED redis"
    "$ROOT/scripts/redis-cluster.sh" start --dir "$DIR/redis" >>"$DIR/up.log" 2>&1 9>&- \
      || { tail -n 5 "$DIR/up.log" >&2; return 1; }
  fi
  REDIS_SEEDS=$(sed 's/^/127.0.0.1:/' "$DIR/redis/ports" | paste -sd, -)
  if ! engine_running cassandra.sh cassandra; then
    STARTED="$STARTED cassandra"
    "$ROOT/scripts/cassandra.sh" start --dir "$DIR/cassandra" >>"$DIR/up.log" 2>&1 9>&- \
      || { tail -n 5 "$DIR/up.log" >&2; return 1; }
  fi
  CASSANDRA_ADDR="127.0.0.1:$(cat "$DIR/cassandra/port")"
}

stop_all() {
  n=$(node_count); i=$n
  # gateways first, the chat node last: what they forwarded is answered
  while [ "$i" -ge 1 ]; do stop_node "$i"; i=$((i - 1)); done
  [ -d "$DIR/cassandra" ] && "$ROOT/scripts/cassandra.sh" stop --dir "$DIR/cassandra" >>"$DIR/down.log" 2>&1
  [ -d "$DIR/redis" ] && "$ROOT/scripts/redis-cluster.sh" stop --dir "$DIR/redis" >>"$DIR/down.log" 2>&1
  [ -d "$DIR/kafka" ] && "$ROOT/scripts/kafka.sh" stop --dir "$DIR/kafka" >>"$DIR/down.log" 2>&1
  return 0
}

# a failed `up`: stops what this `up` started (nodes, then engines), and
# leaves what was running before it
stop_started() {
  for i in $STARTED_NODES; do stop_node "$i"; done
  for e in $STARTED; do
    case $e in
      kafka) "$ROOT/scripts/kafka.sh" stop --dir "$DIR/kafka" >>"$DIR/down.log" 2>&1 ;;
      redis) "$ROOT/scripts/redis-cluster.sh" stop --dir "$DIR/redis" >>"$DIR/down.log" 2>&1 ;;
      cassandra) "$ROOT/scripts/cassandra.sh" stop --dir "$DIR/cassandra" >>"$DIR/down.log" 2>&1 ;;
    esac
  done
  return 0
}

# ------------------------------------------------------------ commands

up() {
  running=$(node_count)
  if [ "$running" -gt "$NODES" ] && [ -n "$(node_pid "$running")" ]; then
    die "$DIR runs $running nodes; down first to start $NODES"
  fi
  # one `up` or `down` at a time on DIR (fd 9 is closed for every child, so
  # the servers do not hold the lock)
  exec 9>"$DIR/.lock"
  flock -n 9 || die "another cluster.sh holds $DIR/.lock"
  WANT_KAFKA=""; KAFKA_ADDR=""
  if has_option --kafka; then WANT_KAFKA=1; else
    echo "kafka: not started: $PARLEY serve has no --kafka option" >>"$DIR/up.log"
  fi
  # a smaller cluster than last time: the nodes past N are not part of it
  i=$((NODES + 1))
  while [ -f "$DIR/node-$i.port" ]; do rm -f "$DIR/node-$i.port" "$DIR/node-$i.internal-port"; i=$((i + 1)); done
  STARTED=""; STARTED_NODES=""
  trap 'stop_started' EXIT
  start_engines
  # the chat node first: the gateways find it through the node directory
  start_node 1
  wait_healthy 1
  i=2
  while [ "$i" -le "$NODES" ]; do start_node "$i"; i=$((i + 1)); done
  i=2
  while [ "$i" -le "$NODES" ]; do wait_healthy "$i"; i=$((i + 1)); done
  trap - EXIT
  i=1
  while [ "$i" -le "$NODES" ]; do echo "ws://127.0.0.1:$(cat "$DIR/node-$i.port")"; i=$((i + 1)); done
}

down() {
  exec 9>"$DIR/.lock"
  flock -w 60 9 || die "another cluster.sh holds $DIR/.lock"
  stop_all
}

status() {
  rc=0
  if [ -d "$DIR/kafka" ]; then
    if s=$("$ROOT/scripts/kafka.sh" status --dir "$DIR/kafka" 2>/dev/null); then
      echo "kafka $s" | sed 's/running \([0-9]*\) \([0-9]*\)/running \1 127.0.0.1:\2/'
    else echo "kafka stopped"; rc=1; fi
  fi
  if [ -d "$DIR/redis" ]; then
    "$ROOT/scripts/redis-cluster.sh" status --dir "$DIR/redis" 2>/dev/null \
      | sed 's/^running \([0-9]*\) \([0-9]*\) \([0-9]*\)/redis-\1 running \2 127.0.0.1:\3/; s/^stopped \([0-9]*\)/redis-\1 stopped/; s/^stopped$/redis stopped/' || rc=1
  else echo "redis stopped"; rc=1; fi
  if s=$("$ROOT/scripts/cassandra.sh" status --dir "$DIR/cassandra" 2>/dev/null); then
    echo "cassandra $s" | sed 's/running \([0-9]*\) \([0-9]*\)/running \1 127.0.0.1:\2/'
  else echo "cassandra stopped"; rc=1; fi
  n=$(node_count); i=1
  [ "$n" -gt 0 ] || { echo "node-1 stopped"; rc=1; }
  while [ "$i" -le "$n" ]; do
    pid=$(node_pid "$i")
    if [ -n "$pid" ]; then echo "node-$i running $pid ws://127.0.0.1:$(cat "$DIR/node-$i.port")"
    else echo "node-$i stopped"; rc=1; fi
    i=$((i + 1))
  done
  return $rc
}

case $cmd in
  up) up ;;
  down) down ;;
  status) status ;;
  *) usage ;;
esac
