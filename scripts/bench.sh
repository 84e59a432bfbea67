#!/bin/sh
# `make bench`: parley-bench's standard set, sized to finish in a few minutes
# on 2 cores. Each figure is the median of RUNS runs (default 3). Prints a
# summary table and leaves every run's JSON in $OUT (default build/bench-out).
# Benchmarks are not tests: this never fails the build over a figure.
#
# Peers (mosquitto, nats-server, Redis pub/sub): scripts/install-bench-deps.sh
# installs them; their drivers (bench/peer_*.c) are built only when present.
set -u
BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
OUT=${OUT:-$BUILD/bench-out}
SECONDS_LOAD=${SECONDS_LOAD:-8}
./scripts/install-bench-deps.sh || echo "bench: peer packages not installed; parley only"
if [ -z "${SKIP_BUILD:-}" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null && cmake --build "$BUILD" -j "$(nproc)" >/dev/null || {
    echo "bench: build failed"; exit 0; }
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
run reconnect   reconnect --n 5000 --restart drain
run sync        sync --backlog 50000
fi

# ---- peers, the same shapes, each started here on a free loopback port with
# persistence off. Only peers whose driver was built (bench/peer_*.c found
# its library) run.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
peer_runs() {   # system driver port server_pid
  sys=$1; drv=$2; port=$3; spid=$4
  i=1
  while [ "$i" -le "$RUNS" ]; do
    echo "bench: $sys run $i/$RUNS" >&2
    "$drv" idle   --port "$port" --n 19900 --pid "$spid" >"$OUT/$sys.connections.$i.json" 2>>"$OUT/$sys.log"
    "$drv" direct --port "$port" --pairs 1000 --window 8 --seconds "$SECONDS_LOAD" >"$OUT/$sys.direct_max.$i.json" 2>>"$OUT/$sys.log"
    "$drv" direct --port "$port" --pairs 1000 --rate 20000 --seconds "$SECONDS_LOAD" >"$OUT/$sys.direct_20k.$i.json" 2>>"$OUT/$sys.log"
    "$drv" group  --port "$port" --size 250 --senders all --window 1 --seconds "$SECONDS_LOAD" >"$OUT/$sys.group.$i.json" 2>>"$OUT/$sys.log"
    "$drv" group  --port "$port" --size 250 --senders 4 --window 8 --seconds "$SECONDS_LOAD" >"$OUT/$sys.group_4pub.$i.json" 2>>"$OUT/$sys.log"
    i=$((i + 1))
  done
}
if [ -x "$BUILD/bench-peer-redis" ] && command -v redis-server >/dev/null; then
  port=$(free_port)
  (ulimit -n "$(ulimit -Hn)"; exec redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
     --maxclients 100000 --daemonize no --loglevel warning --protected-mode no) >"$OUT/redis-server.log" 2>&1 &
  rpid=$!
  sleep 1
  peer_runs redis "$BUILD/bench-peer-redis" "$port" "$rpid"
  kill "$rpid"; wait "$rpid" 2>/dev/null
fi
for p in mosquitto nats; do
  [ -x "$BUILD/bench-peer-$p" ] || echo "bench: no driver for $p (bench/peer_$p.c not written yet); its column stays empty" >&2
done

# medians of the runs, one line per figure, with the peers' next to them
python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys, glob, os
out, runs = sys.argv[1], int(sys.argv[2])
show = {
 "connections": ["held", "connect_rate", "server_bytes_per_conn", "server_bytes_per_conn_marginal", "bench_bytes_per_conn"],
 "direct_max": ["acked_per_s", "deliveries_per_s", "send_ack_p50_ms", "send_ack_p99_ms", "send_delivery_p50_ms", "send_delivery_p99_ms", "send_delivery_p99_9_ms", "send_delivery_max_ms"],
 "direct_20k": ["acked_per_s", "deliveries_per_s", "send_ack_p50_ms", "send_ack_p99_ms", "send_delivery_p50_ms", "send_delivery_p99_ms", "send_delivery_p99_9_ms", "send_delivery_max_ms"],
 "group": ["acked_per_s", "deliveries_per_s", "receipts_per_s", "send_delivery_p50_ms", "send_delivery_p99_ms", "send_delivery_max_ms"],
 "group_4pub": ["acked_per_s", "deliveries_per_s", "receipts_per_s", "send_delivery_p50_ms", "send_delivery_p99_ms"],
 "reconnect": ["server_down_s", "t50_s", "t99_s", "t100_s", "shed"],
 "sync": ["backlog", "catch_up_s", "catch_up_rate"],
}
print("\n== parley-bench standard set: medians of %d runs (JSON in %s) ==" % (runs, out))
for name, keys in show.items():
    docs = []
    for f in sorted(glob.glob(os.path.join(out, name + ".*.json"))):
        try: docs.append(json.load(open(f)))
        except Exception: pass
    if not docs:
        print("%-12s (no result)" % name); continue
    d0 = docs[0]
    print("%-12s fsync=%s server_workers=%s runs=%d" % (name, d0.get("server_fsync"), d0.get("server_workers"), len(docs)))
    for k in keys:
        vals = [d[k] for d in docs if isinstance(d.get(k), (int, float))]
        if not vals: continue
        med = statistics.median(vals)
        line = "  %-34s %14.3f" % (k, med)
        for peer in ("mosquitto", "nats", "redis"):
            pv = []
            for f in glob.glob(os.path.join(out, "%s.%s.*.json" % (peer, name))):
                try:
                    d = json.load(open(f))
                    if isinstance(d.get(k), (int, float)): pv.append(d[k])
                except Exception: pass
            if pv:
                pm = statistics.median(pv)
                line += "   %s %.3f (parley/%s = %.2f)" % (peer, pm, peer, med / pm if pm else float("nan"))
        print(line + "   runs: " + " ".join("%.6g" % v for v in vals))
PY
cat <<'TXT'
What differs: parley makes every message durable (RocksDB, fsync policy as
shown) before acking it, appends an inbox entry per member, keeps a cursor per
device, and pushes the sender's own message back to its device; the peers, as
run here, persist nothing and keep no cursors (Redis pub/sub: fire-and-forget,
ack = PUBLISH reply; each Redis client is two connections, since a subscribed
connection cannot publish).
TXT
exit 0
