#!/usr/bin/env bash
# scripts/bench_writer_pipeline.sh -- bench/RESULTS.md "Cassandra: commits in
# flight": parley-bench direct (and group) against two server binaries on
# --store cassandra, A (before: one commit per round trip per writer) and B
# (this tree: many commits in flight, chat/writer_commit.c), alternating
# A, B in every run, one Cassandra node on the same machine. While B runs,
# /metrics is sampled every 0.5 s for parley_writer_commits_in_flight (the
# median of the samples) and its peak.
#
# Environment: PARLEY_A (required: the server binary to compare against),
# PARLEY_B (build/parley), BENCH (build/parley-bench), RUNS (3),
# SECONDS_LOAD (8), PAIRS (200), GROUP_SIZE (50), OUT (a temp dir).
# Servers and the node are stopped by PID at exit. Needs curl and jq.
set -u
cd "$(dirname "$0")/.."
PARLEY_A=${PARLEY_A:?set PARLEY_A to the server binary to compare against}
PARLEY_B=${PARLEY_B:-build/parley}
BENCH=${BENCH:-build/parley-bench}
RUNS=${RUNS:-3}
SECONDS_LOAD=${SECONDS_LOAD:-8}
PAIRS=${PAIRS:-200}
GROUP_SIZE=${GROUP_SIZE:-50}
OUT=${OUT:-$(mktemp -d /tmp/parley-bench-pipe-XXXXXX)}
mkdir -p "$OUT"
. scripts/bench_lib.sh

# start_server BINARY NAME KEYSPACE: sets PORT and SERVER_PID, waits for /healthz 200
start_server() {
    local bin=$1 name=$2 ks=$3
    mkdir -p "$OUT/data-$ks"
    bench_start_server "$name" "$OUT/data-$ks" "$bin" --store cassandra --cassandra "$CASS" --keyspace "$ks"
}

# samples the in-flight gauge into FILE every 0.5 s (bounded: 10 minutes)
sample_in_flight() {
    local file=$1
    for _ in $(seq 1 1200); do
        curl -fs "http://127.0.0.1:$PORT/metrics" 2>/dev/null | awk '$1 == "parley_writer_commits_in_flight" {print $2}' >>"$file"
        sleep 0.5
    done
}

bench_node_start

for r in $(seq 1 "$RUNS"); do
    for name in A B; do
        bin=$PARLEY_A
        [ "$name" = B ] && bin=$PARLEY_B
        for scen in direct group; do
            start_server "$bin" "$name" "pipe_${scen}_${name}_${r}_$$" || continue
            if [ "$name" = B ]; then sample_in_flight "$OUT/inflight.$scen.$name.$r" & SAMPLER_PID=$!; fi
            echo "run $r $name $scen (load $(load))"
            if [ "$scen" = direct ]; then bench_direct "$BENCH" "$scen.$name.$r"; else bench_group "$BENCH" "$scen.$name.$r"; fi
            echo "  load after: $(load)" | tee -a "$OUT/$scen.$name.$r.txt"
            curl -fs "http://127.0.0.1:$PORT/metrics" 2>/dev/null | grep -E '^parley_writer_commit' \
                >"$OUT/metrics.$scen.$name.$r" || true
            stop_server
        done
    done
done

echo
echo "medians of $RUNS (min..max):"
for scen in direct group; do
    for name in A B; do
        bench_medians "$scen" "$name" acked_per_s send_ack_p50_ms send_ack_p99_ms errors
    done
    for r in $(seq 1 "$RUNS"); do
        f="$OUT/inflight.$scen.B.$r"
        [ -s "$f" ] || continue
        nz=$(awk '$1 > 0' "$f" | median)
        peak=$(awk '$1 == "parley_writer_commits_in_flight_peak" {print $2}' "$OUT/metrics.$scen.B.$r")
        printf '  %-7s B run %d: commits in flight, median of samples while busy %s, peak %s\n' "$scen" "$r" "$nz" "$peak"
    done
done
echo "figures and logs in $OUT (load $(load))"
