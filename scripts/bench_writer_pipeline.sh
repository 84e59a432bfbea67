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
NODE=$(mktemp -d /tmp/parley-bench-node-XXXXXX)
SERVER_PID=""
SAMPLER_PID=""

stop_server() {
    if [ -n "$SAMPLER_PID" ]; then kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null; SAMPLER_PID=""; fi
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}
cleanup() {
    stop_server
    scripts/cassandra.sh stop --dir "$NODE" >/dev/null 2>&1
    rm -rf "$NODE"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$(( 20000 + RANDOM % 40000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    echo "no free port found" >&2
    return 1
}

# start_server BINARY NAME KEYSPACE: sets PORT and SERVER_PID, waits for /healthz 200
start_server() {
    local bin=$1 name=$2 ks=$3
    PORT=$(free_port)
    mkdir -p "$OUT/data-$ks"
    "$bin" serve --listen "127.0.0.1:$PORT" --data "$OUT/data-$ks" --fsync batch --workers 2 \
        --log-level warn --send-rate 1000000 --write-rate 1000000 --user-writer-share 65536 \
        --store cassandra --cassandra "$CASS" --keyspace "$ks" >>"$OUT/server-$name.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 900); do   # 90 s: a new keyspace's schema takes a while
        if curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "server $name exited; $OUT/server-$name.log"; SERVER_PID=""; return 1; }
        sleep 0.1
    done
    echo "server $name not healthy in 90 s"
    return 1
}

# samples the in-flight gauge into FILE every 0.5 s (bounded: 10 minutes)
sample_in_flight() {
    local file=$1
    for _ in $(seq 1 1200); do
        curl -fs "http://127.0.0.1:$PORT/metrics" 2>/dev/null | awk '$1 == "parley_writer_commits_in_flight" {print $2}' >>"$file"
        sleep 0.5
    done
}

load() { cut -d' ' -f1 /proc/loadavg; }

echo "start Cassandra ($(date -u +%H:%M:%S), load $(load))"
scripts/cassandra.sh start --dir "$NODE" >"$OUT/cassandra-start.log" 2>&1 || { cat "$OUT/cassandra-start.log"; exit 1; }
CASS="127.0.0.1:$(cat "$NODE/port")"

for r in $(seq 1 "$RUNS"); do
    for name in A B; do
        bin=$PARLEY_A
        [ "$name" = B ] && bin=$PARLEY_B
        for scen in direct group; do
            start_server "$bin" "$name" "pipe_${scen}_${name}_${r}_$$" || continue
            if [ "$name" = B ]; then sample_in_flight "$OUT/inflight.$scen.$name.$r" & SAMPLER_PID=$!; fi
            echo "run $r $name $scen (load $(load))"
            if [ "$scen" = direct ]; then
                "$BENCH" direct --server "ws://127.0.0.1:$PORT" --fsync batch --server-workers 2 \
                    --pairs "$PAIRS" --rate max --window 8 --seconds "$SECONDS_LOAD" --quiet \
                    --json "$OUT/$scen.$name.$r.json" >"$OUT/$scen.$name.$r.txt" 2>&1
            else
                "$BENCH" group --server "ws://127.0.0.1:$PORT" --fsync batch --server-workers 2 \
                    --size "$GROUP_SIZE" --groups 1 --senders 4 --window 8 --seconds "$SECONDS_LOAD" --quiet \
                    --json "$OUT/$scen.$name.$r.json" >"$OUT/$scen.$name.$r.txt" 2>&1
            fi
            echo "  load after: $(load)" | tee -a "$OUT/$scen.$name.$r.txt"
            curl -fs "http://127.0.0.1:$PORT/metrics" 2>/dev/null | grep -E '^parley_writer_commit' \
                >"$OUT/metrics.$scen.$name.$r" || true
            stop_server
        done
    done
done

median() { sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]; else print "-"}'; }
echo
echo "medians of $RUNS (min..max):"
for scen in direct group; do
    for name in A B; do
        for key in acked_per_s send_ack_p50_ms send_ack_p99_ms errors; do
            vals=$(for f in "$OUT/$scen.$name".*.json; do [ -s "$f" ] && jq -r ".$key" "$f"; done | sort -g)
            n=$(printf '%s\n' "$vals" | grep -c .)
            [ "$n" -gt 0 ] || { printf '  %-7s %s %-18s no run\n' "$scen" "$name" "$key"; continue; }
            printf '  %-7s %s %-18s %10s   (%s..%s, %d runs)\n' "$scen" "$name" "$key" \
                "$(printf '%s\n' "$vals" | median)" "$(printf '%s\n' "$vals" | head -n1)" \
                "$(printf '%s\n' "$vals" | tail -n1)" "$n"
        done
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
