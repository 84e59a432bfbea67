#!/bin/bash
# bench/perf_steady.sh -- where the server's time goes during one bench run:
# `perf record -g` on the server for PERF_SECONDS (default 6) while
# parley-bench runs, then the share of samples per thread and the top
# symbols (self time) per thread.
#
#   bench/perf_steady.sh BUILD OUTDIR parley-bench-args...
#   e.g. bench/perf_steady.sh build /tmp/perf-5k direct --pairs 1000 --rate 5000 --seconds 10
#
# OUTDIR/perf.data stays for `perf report -i`. The server (started like
# bench/thread_cpu.sh's) is stopped by its PID on every path.
set -u
[ $# -ge 3 ] || { echo "usage: $0 BUILD OUTDIR parley-bench-args..." >&2; exit 2; }
B=$1; OUT=$2; shift 2
mkdir -p "$OUT"
D=$(mktemp -d /tmp/parley-perf-XXXXXX)
SP=""; BP=""
cleanup() { [ -n "$BP" ] && kill "$BP" 2>/dev/null; [ -n "$SP" ] && kill "$SP" 2>/dev/null && wait "$SP" 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$B/parley" serve --listen "127.0.0.1:$PORT" --data "$D/data" --fsync batch --log-level warn --send-rate 1000000 \
  --write-rate 1000000 --user-writer-share 65536 > "$D/server.log" 2>&1 &
SP=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.2; done
timeout 300 "$B/parley-bench" "$@" --server "ws://127.0.0.1:$PORT" --quiet > "$OUT/bench.out" 2>&1 &
BP=$!
# the load starts once every connection is set up: wait for the first stored messages
for _ in $(seq 600); do
  m=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '$1 == "parley_messages_stored_total" {print $2}')
  [ "${m%.*}" -gt 1000 ] 2>/dev/null && break; sleep 0.2
done
echo "load1 $(cut -d' ' -f1 /proc/loadavg) at start"
perf record -g -o "$OUT/perf.data" -p "$SP" -- sleep "${PERF_SECONDS:-6}" > "$OUT/perf.log" 2>&1
wait "$BP"; BP=""
grep -E 'acknowledged sends/s|send->delivery: p50|send->delivery: p99 ' "$OUT/bench.out"
echo "== samples per thread"
perf report -i "$OUT/perf.data" --no-children --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -12
echo "== top symbols (self), all threads"
perf report -i "$OUT/perf.data" --no-children --sort comm,sym --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -40
