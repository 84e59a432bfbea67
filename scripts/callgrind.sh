#!/bin/sh
# scripts/callgrind.sh -- instructions per delivered message, a figure that
# does not depend on the machine's noise: `parley serve` runs under
# `valgrind --tool=callgrind`, parley-bench sends a fixed number of messages
# (not seconds) through it, the server is stopped gracefully (SIGTERM, so
# callgrind writes its counts), and the server's total instructions (every
# thread, start-up and shutdown included) are divided by the messages
# delivered. Run it before and after a change: the difference is the change.
#
#   scripts/callgrind.sh [--messages N] [--pairs P] [--window W] [--runs R]
#     defaults: 3000 messages, 1 pair, 1 in flight (one message at a time,
#     so that a group commit holds one message), 3 runs.
# Prints one line per run, their median and the spread between runs.
#
# How stable it is: instruction counts do not depend on the machine's speed,
# but part of the server's work still follows time: how acks and receipts
# fall into group commits, the client's cumulative acks (every 64 events,
# riding on a send frame, or 100 ms: bench/ack_ride.h), and RocksDB's random skip-list heights. Measured on the shared
# 2-core machine: runs 0.9-2 % apart when it was calm, up to 5-8 % when
# other jobs loaded it. Compare medians of the same arguments, before and
# after, on a machine as quiet as you can get. Pings are off (--heartbeat 0)
# and valgrind schedules threads in a fixed order (--fair-sched=yes). BUILD (default
# build) holds parley and parley-bench; OUT (default $BUILD/callgrind-out)
# keeps callgrind's output files (callgrind_annotate reads them).
set -u
BUILD=${BUILD:-build}
OUT=${OUT:-$BUILD/callgrind-out}
MESSAGES=3000; PAIRS=1; WINDOW=1; RUNS=3
while [ $# -ge 2 ]; do
  case $1 in
    --messages) MESSAGES=$2 ;;
    --pairs) PAIRS=$2 ;;
    --window) WINDOW=$2 ;;
    --runs) RUNS=$2 ;;
    *) echo "usage: $0 [--messages N] [--pairs P] [--window W] [--runs R]" >&2; exit 2 ;;
  esac
  shift 2
done
command -v valgrind >/dev/null || { echo "callgrind: valgrind not installed (scripts/install-bench-deps.sh)" >&2; exit 1; }
for b in parley parley-bench; do
  [ -x "$BUILD/$b" ] || { echo "callgrind: $BUILD/$b not built" >&2; exit 1; }
done
mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
healthy() { python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)
s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
sys.exit(0 if s.recv(64)[9:12] == b"200" else 1)
PY
}
alive() { st=$(ps -o stat= -p "$1" 2>/dev/null); [ -n "$st" ] && [ "${st#Z}" = "$st" ]; }
vpid=""; data=""
stop_server() {   # SIGTERM, wait up to 120 s (callgrind writes its file at exit), then SIGKILL
  [ -n "$vpid" ] || return 0
  kill -TERM "$vpid" 2>/dev/null
  i=0
  while [ $i -lt 1200 ] && alive "$vpid"; do sleep 0.1; i=$((i + 1)); done
  if alive "$vpid"; then echo "callgrind: server $vpid did not stop in 120 s; SIGKILL" >&2; kill -KILL "$vpid" 2>/dev/null; fi
  wait "$vpid" 2>/dev/null
  vpid=""
}
trap 'stop_server; [ -n "$data" ] && rm -rf "$data"' EXIT
trap 'exit 130' INT TERM

figures=""
r=1
while [ "$r" -le "$RUNS" ]; do
  port=$(free_port)
  data=$(mktemp -d /tmp/parley-callgrind-XXXXXX)
  cg="$OUT/callgrind.out.run$r"
  rm -f "$cg"
  # the options parley-bench gives a server it starts itself (bench/server.c)
  valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file="$cg" "$BUILD/parley" serve --listen "127.0.0.1:$port" \
    --data "$data" --fsync batch --log-level warn --send-rate 1000000 --write-rate 1000000 \
    --user-writer-share 65536 --drain-window 0 >"$OUT/server.run$r.log" 2>&1 &
  vpid=$!
  i=0
  while [ $i -lt 1200 ] && alive "$vpid" && ! healthy "$port"; do sleep 0.1; i=$((i + 1)); done
  if ! healthy "$port"; then echo "callgrind: server did not come up (see $OUT/server.run$r.log)" >&2; exit 1; fi
  "$BUILD/parley-bench" direct --server "ws://127.0.0.1:$port" --fsync batch --pairs "$PAIRS" --window "$WINDOW" \
    --messages "$MESSAGES" --heartbeat 0 --seconds 600 --quiet --json "$OUT/bench.run$r.json" >"$OUT/bench.run$r.txt" 2>&1
  stop_server
  rm -rf "$data"; data=""
  line=$(python3 - "$cg" "$OUT/bench.run$r.json" "$r" <<'PY'
import json, sys
cg, js, r = sys.argv[1], sys.argv[2], sys.argv[3]
ir = None
try:
    for l in open(cg):
        if l.startswith("summary:") or l.startswith("totals:"):
            ir = int(l.split()[1])
except OSError:
    pass
try: d = json.load(open(js))
except Exception: d = {}
deliv = d.get("delivered_total") or 0
if not ir or not deliv or d.get("valid") not in (True, "true"):
    print("run %s: INVALID (instructions %s, delivered %s, valid %s)" % (r, ir, deliv, d.get("valid")))
    sys.exit(1)
print("run %s: %d instructions / %d delivered = %.0f instructions per delivered message" % (r, ir, deliv, ir / deliv))
PY
  ) || { echo "$line"; exit 1; }
  echo "$line"
  figures="$figures $(echo "$line" | sed 's/.*= \([0-9]*\) instructions per.*/\1/')"
  r=$((r + 1))
done
# shellcheck disable=SC2086
python3 -c 'import sys, statistics; v=[float(x) for x in sys.argv[1:]]; print("median: %.0f instructions per delivered message; spread between runs: %.2f %% (max-min)/min" % (statistics.median(v), 100*(max(v)-min(v))/min(v)))' $figures
