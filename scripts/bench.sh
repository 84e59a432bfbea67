#!/bin/sh
# `make bench`: parley-bench's standard set, sized to finish in a few minutes
# on 2 cores. Each figure is the median of RUNS runs (default 3). Prints a
# summary table and leaves every run's JSON in $OUT (default build/bench-out).
# Benchmarks are not tests: this never fails the build over a figure.
#
# Peers: parley itself over MQTT (parley-mqtt: its --mqtt-listen, driven by
# the mosquitto driver's client stack, bench/peer_parley_mqtt.c), in memory
# (mosquitto, nats-server, Redis pub/sub) and durable (NATS
# JetStream on file storage, Redis Streams with appendfsync always and
# everysec, Apache Kafka with acks=all). scripts/install-bench-deps.sh installs
# them; their drivers (bench/peer_*.c) are built here (PARLEY_BENCH_PEERS=ON,
# off in a plain build) for each peer whose client library is present. A run
# whose deliveries are not exactly acked x receivers is printed as INVALID,
# never as a figure.
set -u
BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
OUT=${OUT:-$BUILD/bench-out}
SECONDS_LOAD=${SECONDS_LOAD:-8}
./scripts/install-bench-deps.sh || echo "bench: peer packages not installed; parley only"
if [ -z "${SKIP_BUILD:-}" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPARLEY_BENCH_PEERS=ON >/dev/null && cmake --build "$BUILD" -j "$(nproc)" >/dev/null || {
    echo "bench: build failed"; exit 0; }
  # back off in the cache: the drivers just built stay, but a later plain
  # build (make build, tests/run.sh) of this directory does not compile them
  cmake -S . -B "$BUILD" -DPARLEY_BENCH_PEERS=OFF >/dev/null
fi
B="$BUILD/parley-bench"
# PARLEY=path/to/parley benchmarks another server binary (default: next to parley-bench)
PARLEY_ARG=""
[ -n "${PARLEY:-}" ] && PARLEY_ARG="--parley $PARLEY"
mkdir -p "$OUT"

run() {   # name, then parley-bench arguments; RUNS times
  name=$1; shift
  i=1
  while [ "$i" -le "$RUNS" ]; do
    echo "bench: $name run $i/$RUNS: parley-bench $*" >&2
    "$B" "$@" $PARLEY_ARG --quiet --json "$OUT/$name.$i.json" >"$OUT/$name.$i.txt" 2>&1 || echo "bench: $name run $i failed (see $OUT/$name.$i.txt)" >&2
    i=$((i + 1))
  done
}

if [ -z "${SKIP_PARLEY:-}" ]; then
run connections connections --n 19900 --hold 5
run direct_max  direct --pairs 1000 --rate max --window 8 --seconds "$SECONDS_LOAD" --plot "$OUT/direct_max.png"
run direct_20k  direct --pairs 1000 --rate 20000 --seconds "$SECONDS_LOAD" --plot "$OUT/direct_20k.png"
run group       group --size 250 --groups 1 --senders all --window 1 --seconds "$SECONDS_LOAD" --plot "$OUT/group.png"
run group_4pub  group --size 250 --groups 1 --senders 4 --window 8 --seconds "$SECONDS_LOAD"
run live        live --size 250 --rate 1000 --seconds "$SECONDS_LOAD"
run reconnect   reconnect --n 5000 --restart drain
run sync        sync --backlog 50000
fi

# ---- peers, the same shapes, each started here on a free loopback port, a
# fresh server per run. In memory: mosquitto, nats, redis (nothing
# persisted). Durable: nats-js (JetStream, file storage), redis-aof-always /
# redis-aof-everysec (Redis Streams, appendonly yes), kafka (one KRaft
# broker, acks=all). Only peers whose driver was built run.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
driver_of() {
  case $1 in
    mosquitto|nats|redis|parley-mqtt) echo "$BUILD/bench-peer-$1" ;;
    nats-js) echo "$BUILD/bench-peer-nats" ;;
    redis-aof-*) echo "$BUILD/bench-peer-redis-streams" ;;
    kafka) echo "$BUILD/bench-peer-kafka" ;;
    *) echo "/nonexistent/bench-peer-$1" ;;
  esac
}
driver_args() {   # what tells a driver which durability it is measuring
  case $1 in
    nats-js) echo "--jetstream 1" ;;
    parley-mqtt) echo "--ws-port $peer_ws_port" ;;   # users are registered over WebSocket
    *) echo "" ;;
  esac
}
peer_run() {   # system driver port server_pid run
  sys=$1; drv=$2; port=$3; spid=$4; i=$5
  # shellcheck disable=SC2046
  set -- $(driver_args "$sys")
  # each driver bounds itself (60 s to connect, the load seconds, 10 s to
  # drain); timeout is a backstop. Idle connections only for the in-memory
  # peers: a durable one's memory per idle connection is the same server's.
  case $sys in mosquitto|nats|redis|parley-mqtt)
    timeout 300 "$drv" idle --port "$port" --n 19900 --pid "$spid" "$@" >"$OUT/$sys.connections.$i.json" 2>>"$OUT/$sys.log" ;;
  esac
  timeout 300 "$drv" direct --port "$port" --pairs 1000 --window 8 --seconds "$SECONDS_LOAD" "$@" >"$OUT/$sys.direct_max.$i.json" 2>>"$OUT/$sys.log"
  timeout 300 "$drv" direct --port "$port" --pairs 1000 --rate 20000 --seconds "$SECONDS_LOAD" "$@" >"$OUT/$sys.direct_20k.$i.json" 2>>"$OUT/$sys.log"
  timeout 300 "$drv" group  --port "$port" --size 250 --senders all --window 1 --seconds "$SECONDS_LOAD" "$@" >"$OUT/$sys.group.$i.json" 2>>"$OUT/$sys.log"
  timeout 300 "$drv" group  --port "$port" --size 250 --senders 4 --window 8 --seconds "$SECONDS_LOAD" "$@" >"$OUT/$sys.group_4pub.$i.json" 2>>"$OUT/$sys.log"
  timeout 300 "$drv" live   --port "$port" --size 250 --rate 1000 --seconds "$SECONDS_LOAD" "$@" >"$OUT/$sys.live.$i.json" 2>>"$OUT/$sys.log"
}
PEERS=${PEERS:-parley-mqtt mosquitto nats redis nats-js redis-aof-always redis-aof-everysec kafka}
PEER_TMP=$(mktemp -d)
spid=""
kafka_dir=""
stop_peer() {   # stops the peer server started last, by its PID
  if [ -n "$kafka_dir" ]; then
    ./scripts/kafka.sh stop --dir "$kafka_dir" >/dev/null 2>&1
    kafka_dir=""
  elif [ -n "$spid" ]; then
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
  fi
  spid=""
}
trap 'stop_peer; rm -rf "$PEER_TMP"' EXIT
trap 'exit 130' INT TERM
find_bin() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; }; }
start_peer() {   # name port: starts it in the background, sets spid and bin
  data="$PEER_TMP/$1.data"
  rm -rf "$data"
  mkdir -p "$data"
  case $1 in
    redis|redis-aof-always|redis-aof-everysec)
      bin=$(find_bin redis-server) || { echo "bench: redis-server not installed" >&2; return 1; }
      case $1 in
        redis) persist="--appendonly no" ;;
        redis-aof-always) persist="--appendonly yes --appendfsync always" ;;
        *) persist="--appendonly yes --appendfsync everysec" ;;
      esac
      # shellcheck disable=SC2086
      (ulimit -n "$(ulimit -Hn)"; exec "$bin" --port "$2" --bind 127.0.0.1 --save "" $persist --dir "$data" \
         --maxclients 100000 --daemonize no --loglevel warning --protected-mode no) >>"$OUT/$1-server.log" 2>&1 &
      ;;
    mosquitto)
      bin=$(find_bin mosquitto) || { echo "bench: mosquitto not installed" >&2; return 1; }
      # in memory only; queues deep enough that the 250-member group at full
      # speed never drops a QoS 1 message for a slow subscriber
      cat >"$PEER_TMP/mosquitto.conf" <<CONF
listener $2 127.0.0.1
persistence false
allow_anonymous true
max_connections -1
max_queued_messages 1000000
set_tcp_nodelay true
connection_messages false
log_dest stderr
log_type error
log_type warning
CONF
      (ulimit -n "$(ulimit -Hn)"; exec "$bin" -c "$PEER_TMP/mosquitto.conf") >>"$OUT/mosquitto-server.log" 2>&1 &
      ;;
    nats)
      bin=$(find_bin nats-server) || { echo "bench: nats-server not installed" >&2; return 1; }
      # core NATS only: no JetStream (-js not given), so nothing is stored
      (ulimit -n "$(ulimit -Hn)"; exec "$bin" -a 127.0.0.1 -p "$2") >>"$OUT/nats-server.log" 2>&1 &
      ;;
    nats-js)
      bin=$(find_bin nats-server) || { echo "bench: nats-server not installed" >&2; return 1; }
      # JetStream with its store in $data; the driver makes a file-storage stream
      (ulimit -n "$(ulimit -Hn)"; exec "$bin" -a 127.0.0.1 -p "$2" -js -sd "$data") >>"$OUT/nats-js-server.log" 2>&1 &
      ;;
    kafka)
      bin=scripts/kafka.sh
      ./scripts/kafka.sh start --dir "$data" --port "$2" >>"$OUT/kafka-server.log" 2>&1 || {
        echo "bench: kafka did not start (see $OUT/kafka-server.log)" >&2; ./scripts/kafka.sh stop --dir "$data" >/dev/null 2>&1; return 1; }
      kafka_dir=$data
      spid=$(cat "$data/kafka.pid")
      return 0
      ;;
    parley-mqtt)
      # the server parley-bench starts (bench/server.c: same limits lifted),
      # with its MQTT listener on the peer's port and WebSocket on another
      bin=${PARLEY:-$BUILD/parley}
      peer_ws_port=$(free_port)
      (ulimit -n "$(ulimit -Hn)"; exec "$bin" serve --listen "127.0.0.1:$peer_ws_port" --mqtt-listen "127.0.0.1:$2" \
         --data "$data" --fsync batch --log-level warn --send-rate 1000000 --write-rate 1000000 \
         --user-writer-share 65536) >>"$OUT/parley-mqtt-server.log" 2>&1 &
      spid=$!
      python3 - "$peer_ws_port" <<'PY' || { echo "bench: parley-mqtt did not become healthy (see $OUT/parley-mqtt-server.log)" >&2; stop_peer; return 1; }
import sys, time, urllib.request
for _ in range(100):   # 20 s at most
    try:
        if urllib.request.urlopen("http://127.0.0.1:%s/healthz" % sys.argv[1], timeout=1).status == 200: sys.exit(0)
    except OSError: pass
    time.sleep(0.2)
sys.exit(1)
PY
      return 0
      ;;
    *) echo "bench: unknown peer $1" >&2; return 1 ;;
  esac
  spid=$!
  sleep 1
  kill -0 "$spid" 2>/dev/null || { echo "bench: $1 did not start (see $OUT/$1-server.log)" >&2; spid=""; return 1; }
}
# every run gets a freshly started server: its memory per idle connection is
# then not hidden by heap that earlier runs grew and freed
for p in $PEERS; do
  drv=$(driver_of "$p")
  if [ ! -x "$drv" ]; then
    echo "bench: no driver for $p ($drv not built: its bench/peer_*.c or client library missing); its column stays empty" >&2
    continue
  fi
  i=1
  while [ "$i" -le "$RUNS" ]; do
    port=$(free_port)
    start_peer "$p" "$port" || break
    echo "bench: $p run $i/$RUNS ($bin, pid $spid, 127.0.0.1:$port, load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    peer_run "$p" "$drv" "$port" "$spid" "$i"
    stop_peer
    i=$((i + 1))
  done
done

# medians of the runs, one line per figure, with the peers' next to them
python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys, glob, os
out, runs = sys.argv[1], int(sys.argv[2])
lat = ["send_delivery_p50_ms", "send_delivery_p99_ms", "send_delivery_p99_9_ms", "send_delivery_max_ms"]
show = {
 "connections": ["held", "connect_rate", "server_bytes_per_conn", "server_bytes_per_conn_marginal", "bench_bytes_per_conn"],
 "direct_max": ["acked_per_s", "deliveries_per_s", "send_ack_p50_ms", "send_ack_p99_ms"] + lat,
 "direct_20k": ["acked_per_s", "deliveries_per_s", "send_ack_p50_ms", "send_ack_p99_ms"] + lat,
 "group": ["acked_per_s", "deliveries_per_s", "receipts_per_s"] + lat,
 "group_4pub": ["acked_per_s", "deliveries_per_s", "receipts_per_s", "send_delivery_p50_ms", "send_delivery_p99_ms"],
 "live": ["acked_per_s", "deliveries_per_s", "send_ack_p50_ms", "send_ack_p99_ms"] + lat,
 "reconnect": ["server_down_s", "t50_s", "t99_s", "t100_s", "shed"],
 "sync": ["backlog", "catch_up_s", "catch_up_rate"],
}
# shapes whose every run must account for its messages: deliveries after the
# drain == acked x receivers, or the run is INVALID and gives no figure
checked = ("direct_max", "direct_20k", "group", "group_4pub", "live")
print("\n== parley-bench standard set: medians of %d runs (JSON in %s) ==" % (runs, out))
invalid = []
def valid(d):
    return d.get("valid") in (True, "true")
def load(name, pattern):
    docs = []
    for f in sorted(glob.glob(os.path.join(out, pattern))):
        try: d = json.load(open(f))
        except Exception:
            if name in checked: invalid.append("%s: no result (the driver failed; see its log)" % os.path.basename(f))
            continue
        if name in checked and not valid(d):
            invalid.append("%s: deliveries %s, expected %s (acked %s x %s)%s" % (
                os.path.basename(f), d.get("delivered_total", "?"), d.get("deliveries_expected", "?"),
                d.get("acked_total", "?"), d.get("receivers_per_msg", "?"),
                ": " + d["error"] if d.get("error") else ""))
            continue
        docs.append(d)
    return docs
def nums(docs, k):
    return [d[k] for d in docs if isinstance(d.get(k), (int, float))]
peers = ("parley-mqtt", "mosquitto", "nats", "redis", "nats-js", "redis-aof-always", "redis-aof-everysec", "kafka")
durability = {}
for name, keys in show.items():
    docs = load(name, name + ".*.json")
    pdocs = {p: load(name, "%s.%s.*.json" % (p, name)) for p in peers}
    for p, ds in pdocs.items():
        for d in ds:
            if d.get("durability"): durability.setdefault(p, d["durability"])
    if not docs and not any(pdocs.values()):
        print("%-12s (no valid result)" % name); continue
    if docs:
        d0 = docs[0]
        print("%-12s fsync=%s server_workers=%s runs=%d" % (name, d0.get("server_fsync"), d0.get("server_workers"), len(docs)))
    else:
        print("%-12s parley: no valid result (SKIP_PARLEY?)" % name)
    for k in keys:
        vals = nums(docs, k)
        med = statistics.median(vals) if vals else None
        line = "  %-34s %14s" % (k, "%.3f" % med if vals else "-")
        any_peer = False
        for peer in peers:
            pv = nums(pdocs[peer], k)
            if pv:
                any_peer = True
                pm = statistics.median(pv)
                line += "   %s %.3f" % (peer, pm)
                if med is not None:
                    line += " (parley/%s = %.2f)" % (peer, med / pm if pm else float("nan"))
        if not vals and not any_peer: continue
        if vals: line += "   runs: " + " ".join("%.6g" % v for v in vals)
        print(line)
if durability:
    print("\nDurability of each peer (an ack means):")
    for p in peers:
        if p in durability: print("  %-20s %s" % (p, durability[p]))
if invalid:
    print("\nINVALID runs (deliveries do not match acks; no figure taken from them):")
    for line in invalid: print("  " + line)
PY
cat <<'TXT'
What differs: parley makes every message durable (RocksDB, fsync policy as
shown) before acking it, appends an inbox entry per member, keeps a cursor per
device, and pushes the sender's own message back to its device; the in-memory
peers (mosquitto, nats, redis) persist nothing and keep no cursors; the
durable ones (nats-js, redis-aof-*, kafka) store each message before their
ack, with the durability listed above. parley-mqtt: parley with all of the
above, over its MQTT listener on the mosquitto driver's client stack; QoS 1
both ways, ack = the Sent response on T/res (stored), each event PUBACKed by
the device (its Ack). mosquitto: QoS 1, ack = the
broker's PUBACK, clean sessions, persistence false. nats-server: core NATS, no
JetStream; NATS has no publish ack, so "ack" is the delivery to the peer
(direct) or the sender's own copy back (group). Redis pub/sub: fire-and-forget,
ack = PUBLISH reply; each Redis client is two connections, since a subscribed
connection cannot publish.
TXT
exit 0
