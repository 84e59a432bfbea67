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
. "$(dirname "$0")/bench_server.sh"
bench_server_start "$B" syscalls
echo "load1 $(cut -d' ' -f1 /proc/loadavg) at start"
strace -c -f -p "$SP" -o "$D/strace" 2>/dev/null &
HELPER_PID=$!
sleep 1
bench_run "$B" "$@"
stored=$(bench_metric parley_messages_stored_total)
kill -INT "$HELPER_PID" 2>/dev/null; wait "$HELPER_PID" 2>/dev/null; HELPER_PID=""
bench_summary
awk -v m="${stored:-0}" '$1 ~ /^[0-9.]+$/ && $NF != "total" {   # % time, seconds, usecs/call, calls, [errors,] syscall
    printf "%-16s %9d calls  %6.2f per message\n", $NF, $4, m ? $4 / m : 0 }
  END { printf "(%d messages stored)\n", m }' "$D/strace" | sort -k2 -n -r | head -14
