#!/bin/bash
# bench/syscalls.sh -- system calls per message, by kind, for one bench run
# (strace -c -f on the server): eventfd writes are `write`, their reads
# `read`, socket output `sendto`, input `recvfrom`, wake-ups `epoll_wait`
# and `poll`, lock waits `futex`.
#
#   bench/syscalls.sh BUILD parley-bench-args...
#   e.g. bench/syscalls.sh build direct --pairs 100 --rate 2000 --seconds 8
#
# strace slows every system call, so use a rate the server carries with
# room to spare (the counts per message are what matter, not the rate).
# Same server options as bench/thread_cpu.sh; the server and strace are
# stopped by their PIDs on every path.
set -u
[ $# -ge 2 ] || { echo "usage: $0 BUILD parley-bench-args..." >&2; exit 2; }
command -v strace >/dev/null || { echo "$0: strace not installed" >&2; exit 1; }
B=$1; shift
D=$(mktemp -d /tmp/parley-syscalls-XXXXXX)
SP=""; TP=""
cleanup() { [ -n "$TP" ] && kill "$TP" 2>/dev/null && wait "$TP" 2>/dev/null
            [ -n "$SP" ] && kill "$SP" 2>/dev/null && wait "$SP" 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$B/parley" serve --listen "127.0.0.1:$PORT" --data "$D/data" --fsync batch --log-level warn --send-rate 1000000 \
  --write-rate 1000000 --user-writer-share 65536 > "$D/server.log" 2>&1 &
SP=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.2; done
echo "load1 $(cut -d' ' -f1 /proc/loadavg) at start"
strace -c -f -p "$SP" -o "$D/strace" 2>/dev/null &
TP=$!
sleep 1
timeout 300 "$B/parley-bench" "$@" --server "ws://127.0.0.1:$PORT" --quiet > "$D/out" 2>&1
stored=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '$1 == "parley_messages_stored_total" {print $2}')
kill -INT "$TP" 2>/dev/null; wait "$TP" 2>/dev/null; TP=""
grep -E 'acknowledged sends/s|deliveries/s \(|send->delivery: p50|send->delivery: p99 |== acked' "$D/out"
awk -v m="${stored:-0}" '$1 ~ /^[0-9.]+$/ && $NF != "total" {   # % time, seconds, usecs/call, calls, [errors,] syscall
    printf "%-16s %9d calls  %6.2f per message\n", $NF, $4, m ? $4 / m : 0 }
  END { printf "(%d messages stored)\n", m }' "$D/strace" | sort -k2 -n -r | head -14
