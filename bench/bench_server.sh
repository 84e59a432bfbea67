# bench/bench_server.sh -- sourced (not run) by bench/thread_cpu.sh,
# bench/thread_switches.sh and bench/syscalls.sh: one parley server for one
# parley-bench run, with the options parley-bench gives a server it starts
# itself, on a free loopback port, stopped by its PID on every path.
#
#   bench_server_start BUILD TAG   makes $D (/tmp/parley-TAG-XXXXXX), starts
#                                  BUILD/parley there as $SP on $PORT and
#                                  waits (bounded) for /healthz; the EXIT
#                                  trap stops $HELPER_PID (if set), then
#                                  $SP, and removes $D
#   bench_metric NAME              NAME's value in the server's /metrics
#   bench_run BUILD ARGS...        parley-bench ARGS against it (300 s at
#                                  most), its output in $D/out
#   bench_summary                  the rate and latency lines of $D/out
D=""; SP=""; PORT=""; HELPER_PID=""

bench_cleanup() {
  [ -n "$HELPER_PID" ] && kill "$HELPER_PID" 2>/dev/null && wait "$HELPER_PID" 2>/dev/null
  [ -n "$SP" ] && kill "$SP" 2>/dev/null && wait "$SP" 2>/dev/null
  [ -n "$D" ] && rm -rf "$D"
}

bench_server_start() {
  D=$(mktemp -d "/tmp/parley-$2-XXXXXX")
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$1/parley" serve --listen "127.0.0.1:$PORT" --data "$D/data" --fsync batch --log-level warn --send-rate 1000000 \
    --write-rate 1000000 --user-writer-share 65536 > "$D/server.log" 2>&1 &
  SP=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.2; done
}

bench_metric() { curl -s "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

bench_run() {
  local b=$1; shift
  timeout 300 "$b/parley-bench" "$@" --server "ws://127.0.0.1:$PORT" --quiet > "$D/out" 2>&1
}

bench_summary() { grep -E 'acknowledged sends/s|deliveries/s \(|send->delivery: p50|send->delivery: p99 |== acked' "$D/out"; }
