# scripts/bench_lib.sh -- sourced (not run) by scripts/bench_cassandra.sh and
# scripts/bench_writer_pipeline.sh: one Cassandra node and parley servers
# for parley-bench runs, each on free loopback ports, every one stopped by
# PID at exit (the trap is set here), and the medians table they print.
# The caller sets OUT (and, for bench_direct/bench_group, PAIRS,
# GROUP_SIZE, SECONDS_LOAD) before it calls these.
NODE=""; CASS=""; PORT=""; SERVER_PID=""; SAMPLER_PID=""

# stops the sampler (if any), then the server: SIGTERM, up to 30 s, SIGKILL
stop_server() {
    if [ -n "$SAMPLER_PID" ]; then kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null; SAMPLER_PID=""; fi
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}
bench_cleanup() {
    stop_server
    if [ -n "$NODE" ]; then
        scripts/cassandra.sh stop --dir "$NODE" >/dev/null 2>&1
        rm -rf "$NODE"
    fi
}
trap bench_cleanup EXIT
trap 'exit 1' INT TERM

# a loopback port nobody listens on (bounded tries); the server's bind
# fails loudly if one is taken in between
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$(( 20000 + RANDOM % 40000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    echo "no free port found" >&2
    return 1
}

load() { cut -d' ' -f1 /proc/loadavg; }

# starts the node (scripts/cassandra.sh) in a new NODE directory: sets CASS
bench_node_start() {
    NODE=$(mktemp -d /tmp/parley-bench-node-XXXXXX)
    echo "start Cassandra ($(date -u +%H:%M:%S), load $(load))"
    scripts/cassandra.sh start --dir "$NODE" >"$OUT/cassandra-start.log" 2>&1 || { cat "$OUT/cassandra-start.log"; exit 1; }
    CASS="127.0.0.1:$(cat "$NODE/port")"
}

# bench_start_server NAME DATA_DIR BINARY [serve options...]: the server with
# the limits parley-bench lifts itself, its log $OUT/server-NAME.log; sets
# PORT and SERVER_PID, waits (90 s at most) for /healthz 200
bench_start_server() {
    local name=$1 data=$2 bin=$3
    shift 3
    PORT=$(free_port)
    "$bin" serve --listen "127.0.0.1:$PORT" --data "$data" --fsync batch --workers 2 \
        --log-level warn --send-rate 1000000 --write-rate 1000000 --user-writer-share 65536 \
        "$@" >>"$OUT/server-$name.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 900); do   # 90 s: a new keyspace's schema takes a while
        if curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "server $name exited; $OUT/server-$name.log"; SERVER_PID=""; return 1; }
        sleep 0.1
    done
    echo "server $name not healthy in 90 s"
    return 1
}

# bench_direct BENCH NAME / bench_group BENCH NAME: the scenario against
# the running server, its JSON in $OUT/NAME.json and its output in $OUT/NAME.txt
bench_direct() {
    "$1" direct --server "ws://127.0.0.1:$PORT" --fsync batch --server-workers 2 \
        --pairs "$PAIRS" --rate max --window 8 --seconds "$SECONDS_LOAD" --quiet \
        --json "$OUT/$2.json" >"$OUT/$2.txt" 2>&1
}
bench_group() {
    "$1" group --server "ws://127.0.0.1:$PORT" --fsync batch --server-workers 2 \
        --size "$GROUP_SIZE" --groups 1 --senders 4 --window 8 --seconds "$SECONDS_LOAD" --quiet \
        --json "$OUT/$2.json" >"$OUT/$2.txt" 2>&1
}

median() { sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]; else print "-"}'; }

# bench_medians SCEN NAME KEY...: for each KEY, the median (min..max) over
# $OUT/SCEN.NAME.*.json
bench_medians() {
    local scen=$1 name=$2 key vals n
    shift 2
    for key in "$@"; do
        vals=$(for f in "$OUT/$scen.$name".*.json; do [ -s "$f" ] && jq -r ".$key" "$f"; done | sort -g)
        n=$(printf '%s\n' "$vals" | grep -c .)
        [ "$n" -gt 0 ] || { printf '  %-7s %-9s %-22s no run\n' "$scen" "$name" "$key"; continue; }
        printf '  %-7s %-9s %-22s %10s   (%s..%s, %d runs)\n' "$scen" "$name" "$key" \
            "$(printf '%s\n' "$vals" | median)" "$(printf '%s\n' "$vals" | head -n1)" \
            "$(printf '%s\n' "$vals" | tail -n1)" "$n"
    done
}
