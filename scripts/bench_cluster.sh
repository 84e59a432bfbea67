#!/usr/bin/env bash
# scripts/bench_cluster.sh -- the figures of bench/RESULTS.md's "Across
# nodes (issue 13)": parley-bench direct and group (250 members) against one
# node and against three (scripts/cluster.sh: node 1 with every role, nodes
# 2 and 3 gateway-only in front of it), the clients on every node through
# --server URL1,URL2,URL3; acked/s, deliveries/s and send->delivery
# p50/p99, medians of RUNS runs each. One cluster of three nodes serves
# both: "1 node" is every client on node 1 (with every role; nodes 2 and 3
# are up and idle), "3 nodes" is clients on all three; the two alternate
# round by round after one uncounted warm-up run. The engines (Redis Cluster, Cassandra,
# Kafka when the binary has --kafka) run on the same machine as the nodes
# and the bench.
#
# The nodes run with the per-device limits lifted as parley-bench lifts
# them for a server it starts itself (--send-rate, --write-rate,
# --user-writer-share; through a wrapper given to cluster.sh as PARLEY_BIN
# that execs the real binary, so the PIDs cluster.sh records are parley's).
# Rate mode (a fixed offered load), so the latencies are of a load the
# cluster carries, not of a queue growing.
#
# Environment: BUILD (build), RUNS (3), SECONDS_LOAD (8), PAIRS (100),
# RATE (100 msgs/s in all, direct), GROUP_SENDERS (4), GROUP_RATE (10 msgs/s
# in all, group: 10 x 249 deliveries/s), OUT (a temp dir: every run's JSON,
# the cluster's logs and summary.txt). Everything started here is stopped
# by PID at exit (cluster.sh down), also on Ctrl-C. Each parley-bench run
# is bounded by `timeout`.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
RUNS=${RUNS:-3}
SECONDS_LOAD=${SECONDS_LOAD:-8}
PAIRS=${PAIRS:-100}
RATE=${RATE:-100}
GROUP_SENDERS=${GROUP_SENDERS:-4}
GROUP_RATE=${GROUP_RATE:-10}
OUT=${OUT:-$(mktemp -d /tmp/parley-bench-cluster-XXXXXX)}
mkdir -p "$OUT"
DIR="$OUT/cluster"
for f in "$BUILD/parley" "$BUILD/parley-bench"; do
    [ -x "$f" ] || { echo "bench_cluster.sh: no $f (build first)" >&2; exit 1; }
done

cleanup() { scripts/cluster.sh down --dir "$DIR" >/dev/null 2>&1; }
trap cleanup EXIT
trap 'exit 1' INT TERM

# the node binary with the bench's limits (exec: the PID stays parley's)
WRAP="$OUT/parley-node"
cat >"$WRAP" <<EOF
#!/bin/sh
exec "$BUILD/parley" "\$@" --send-rate 1000000 --write-rate 1000000 --user-writer-share 65536 --log-level warn
EOF
chmod +x "$WRAP"

up() { # N: prints the comma-joined URLs
    PARLEY_BIN="$WRAP" scripts/cluster.sh up --nodes "$1" --dir "$DIR" >"$OUT/up-$1.out" 2>"$OUT/up-$1.err" || {
        tail -n 20 "$OUT/up-$1.err" >&2
        return 1
    }
    paste -sd, "$OUT/up-$1.out"
}

one_run() { # label run servers scenario args...
    local label=$1 r=$2 servers=$3; shift 3
    timeout $((SECONDS_LOAD * 10 + 120)) "$BUILD/parley-bench" "$@" --server "$servers" --seconds "$SECONDS_LOAD" \
        --quiet --json "$OUT/$label.$r.json" >"$OUT/$label.$r.log" 2>&1 ||
        echo "  $label run $r: parley-bench exited $? (see $OUT/$label.$r.log)" >&2
}

echo "bench_cluster.sh: $(date -u +%H:%M) UTC, $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg), out $OUT" >&2
all=$(up 3) || exit 1
first=${all%%,*}
# a first run, not counted: Cassandra right after its start is still
# compiling its hot paths (the first runs against it are 10-100x slower)
one_run warmup 1 "$all" direct --pairs "$PAIRS" --rate "$RATE"
# one node: every client on node 1 (all roles), nodes 2 and 3 idle; three
# nodes: clients on all three (each connection picks a URL at random).
# Alternated per round, so both see the same engines and the same load.
for r in $(seq 1 "$RUNS"); do
    one_run direct-1node "$r" "$first" direct --pairs "$PAIRS" --rate "$RATE"
    one_run direct-3node "$r" "$all" direct --pairs "$PAIRS" --rate "$RATE"
    one_run group250-1node "$r" "$first" group --size 250 --groups 1 --senders "$GROUP_SENDERS" --rate "$GROUP_RATE"
    one_run group250-3node "$r" "$all" group --size 250 --groups 1 --senders "$GROUP_SENDERS" --rate "$GROUP_RATE"
done
echo "bench_cluster.sh: done $(date -u +%H:%M) UTC, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$OUT" "$RUNS" <<'PY' | tee "$OUT/summary.txt"
import json, statistics, sys, os
out, runs = sys.argv[1], int(sys.argv[2])
keys = ["acked_per_s", "deliveries_per_s", "send_ack_p50_ms", "send_delivery_p50_ms", "send_delivery_p99_ms",
        "errors", "shed"]
print("%-16s %5s " % ("run", "valid") + " ".join("%20s" % k for k in keys))
for label in ["direct-1node", "direct-3node", "group250-1node", "group250-3node"]:
    rs = []
    for r in range(1, runs + 1):
        p = os.path.join(out, "%s.%d.json" % (label, r))
        if os.path.exists(p):
            rs.append(json.load(open(p)))
    if not rs:
        print("%-16s no runs" % label)
        continue
    valid = sum(1 for x in rs if x.get("valid") == "true")
    med = [statistics.median(x.get(k, float("nan")) for x in rs) for k in keys]
    print("%-16s %2d/%-2d " % (label, valid, len(rs)) + " ".join("%20.1f" % v for v in med))
PY
