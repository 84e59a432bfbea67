#!/usr/bin/env bash
# scripts/bench_cassandra.sh -- the figures of bench/RESULTS.md's section
# "Cassandra backend": the same parley-bench scenarios against a server on
# --store rocksdb and on --store cassandra, alternating, in one run, with the
# Cassandra node on the same machine; then one conversation of
# HISTORY_MESSAGES messages loaded through the store interface and its
# history pages timed (parley-history-load), and the bytes on disk per
# message of each backend.
#
# Environment: BUILD (build), RUNS (3), SECONDS_LOAD (8), PAIRS (200),
# GROUP_SIZE (50), HISTORY_MESSAGES (1000000), BODY (32), OUT (a temp dir:
# the JSON of every run and the logs), SKIP_LOAD=1 (history and disk only),
# SKIP_HISTORY=1.
# The servers are started here (parley serve with the limits parley-bench
# lifts itself) on free loopback ports and stopped by PID; the node is
# scripts/cassandra.sh's, stopped by PID at exit. Needs curl and jq
# (scripts/install-bench-deps.sh).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
SECONDS_LOAD=${SECONDS_LOAD:-8}
PAIRS=${PAIRS:-200}
GROUP_SIZE=${GROUP_SIZE:-50}
HISTORY_MESSAGES=${HISTORY_MESSAGES:-1000000}
BODY=${BODY:-32}
OUT=${OUT:-$(mktemp -d /tmp/parley-bench-cass-XXXXXX)}
mkdir -p "$OUT"
. scripts/bench_lib.sh

# start_server STORE DATA_DIR KEYSPACE: sets PORT and SERVER_PID, waits for /healthz 200
start_server() {
    local store=$1 data=$2 ks=$3 args=()
    [ "$store" = cassandra ] && args=(--store cassandra --cassandra "$CASS" --keyspace "$ks")
    bench_start_server "$store" "$data" "$BUILD/parley" "${args[@]}"
}

bench_node_start

if [ "${SKIP_LOAD:-0}" != 1 ]; then
    for r in $(seq 1 "$RUNS"); do
        for store in rocksdb cassandra; do
            data=$(mktemp -d /tmp/parley-bench-data-XXXXXX)
            if start_server "$store" "$data" "bench_${r}_$$"; then
                echo "run $r $store: direct (load $(load))"
                bench_direct "$BUILD/parley-bench" "direct.$store.$r"
                echo "run $r $store: group (load $(load))"
                bench_group "$BUILD/parley-bench" "group.$store.$r"
            fi
            stop_server
            rm -rf "$data"
        done
    done
    echo
    echo "medians of $RUNS (min..max):"
    for scen in direct group; do
        for store in rocksdb cassandra; do
            bench_medians "$scen" "$store" acked_per_s deliveries_per_s send_ack_p50_ms send_ack_p99_ms \
                send_delivery_p99_ms errors
        done
    done
fi

if [ "${SKIP_HISTORY:-0}" != 1 ]; then
    # one conversation made through the server (users, membership), then
    # filled through the store with the server stopped, then timed
    for store in rocksdb cassandra; do
        data=$(mktemp -d /tmp/parley-bench-hist-XXXXXX)
        ks="history_$$"
        start_server "$store" "$data" "$ks" || continue
        cli=(timeout 60 "$BUILD/parley-cli" --server "ws://127.0.0.1:$PORT")
        a=$("${cli[@]}" --state "$data/alice" register "alice$$" | tail -n1)
        "${cli[@]}" --state "$data/bob" register "bob$$" >/dev/null
        conv=$("${cli[@]}" --state "$data/alice" direct "bob$$" | tail -n1)
        "${cli[@]}" --state "$data/alice" send "$conv" "first" >/dev/null
        stop_server
        echo "history on $store: conversation $conv of $HISTORY_MESSAGES messages ($BODY-byte bodies), load $(load)"
        if [ "$store" = cassandra ]; then where=(--store cassandra --cassandra "$CASS" --keyspace "$ks");
        else where=(--data "$data"); fi
        "$BUILD/parley-history-load" "${where[@]}" --conv "$conv" --sender "$a" --device 1 \
            --messages "$HISTORY_MESSAGES" --body "$BODY" --batch 2000 | tee "$OUT/history.$store.txt"
        # bytes on disk: RocksDB's directory after the loader closed it;
        # Cassandra's keyspace directory after a stop (which flushes the
        # memtables), the commit log not counted
        if [ "$store" = rocksdb ]; then
            bytes=$(du -sb "$data" | cut -f1)
        else
            scripts/cassandra.sh stop --dir "$NODE" >/dev/null
            bytes=$(du -sb "$NODE/data/$ks" | cut -f1)
            scripts/cassandra.sh start --dir "$NODE" --port "${CASS##*:}" >>"$OUT/cassandra-start.log" 2>&1
        fi
        echo "disk $store: $bytes bytes for $HISTORY_MESSAGES messages: $(( bytes / HISTORY_MESSAGES )) bytes per message" \
            | tee -a "$OUT/history.$store.txt"
        rm -rf "$data"
    done
fi
echo "figures and logs in $OUT (load $(load))"
