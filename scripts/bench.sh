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
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null && cmake --build "$BUILD" -j "$(nproc)" --target parley parley-bench >/dev/null || {
  echo "bench: build failed"; exit 0; }
B="$BUILD/parley-bench"
mkdir -p "$OUT"

run() {   # name, then parley-bench arguments; RUNS times
  name=$1; shift
  i=1
  while [ "$i" -le "$RUNS" ]; do
    echo "bench: $name run $i/$RUNS: parley-bench $*" >&2
    "$B" "$@" --quiet --json "$OUT/$name.$i.json" >"$OUT/$name.$i.txt" 2>&1 || echo "bench: $name run $i failed (see $OUT/$name.$i.txt)" >&2
    i=$((i + 1))
  done
}

run connections connections --n 19900 --hold 5
run direct_max  direct --pairs 1000 --rate max --window 8 --seconds "$SECONDS_LOAD" --plot "$OUT/direct_max.png"
run direct_20k  direct --pairs 1000 --rate 20000 --seconds "$SECONDS_LOAD" --plot "$OUT/direct_20k.png"
run group       group --size 250 --groups 1 --senders all --window 1 --seconds "$SECONDS_LOAD" --plot "$OUT/group.png"
run group_4pub  group --size 250 --groups 1 --senders 4 --window 8 --seconds "$SECONDS_LOAD"
run reconnect   reconnect --n 5000 --restart drain
run sync        sync --backlog 50000

# medians of the runs, one line per figure
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
        if vals:
            print("  %-34s %14.3f   (runs: %s)" % (k, statistics.median(vals), " ".join("%.6g" % v for v in vals)))
PY
exit 0
