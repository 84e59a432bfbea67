#!/bin/bash
# bench/thread_cpu.sh -- server CPU per message, per thread, for one bench run.
#
#   bench/thread_cpu.sh BUILD parley-bench-args...
#   e.g. bench/thread_cpu.sh build direct --pairs 1000 --rate 20000 --seconds 8
#
# Starts BUILD/parley on a free loopback port (the options parley-bench
# gives a server it starts itself), reads utime+stime of every thread from
# /proc/PID/task/*/stat before and after the run, and prints each thread
# name's CPU seconds and microseconds per stored message
# (parley_messages_stored_total), with the part spent in the kernel (sys:
# system calls, TCP, fsync), then the server's total. The server is
# stopped by its PID on every path. Last line: the parley-bench process's own
# CPU (with --e2e: the clients' crypto).
set -u
[ $# -ge 2 ] || { echo "usage: $0 BUILD parley-bench-args..." >&2; exit 2; }
B=$1; shift
. "$(dirname "$0")/bench_server.sh"
bench_server_start "$B" threadcpu
# per thread name: utime+stime and stime, in ticks
ticks() { for t in /proc/"$SP"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14+$15, $15}' "$t/stat")"; done |
          awk '{a[$1]+=$2; s[$1]+=$3} END {for (k in a) print k, a[k], s[k]}' | sort; }
# voluntary context switches (wake-ups) per thread name
switches() { for t in /proc/"$SP"/task/*; do echo "$(cat "$t/comm") $(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status")"; done |
             awk '{a[$1]+=$2} END {for (k in a) print k, a[k]}' | sort; }
ticks > "$D/before"
switches > "$D/sw_before"
c0=$(bench_metric parley_store_commits_total)
echo "load1 $(cut -d' ' -f1 /proc/loadavg) at start"
# the bench's own CPU too (setup included): with --e2e it does the clients' crypto
timeout 300 /usr/bin/time -f "%U %S" -o "$D/bench_time" "$B/parley-bench" "$@" --server "ws://127.0.0.1:$PORT" --quiet > "$D/out" 2>&1
ticks > "$D/after"
switches > "$D/sw_after"
bench_summary
stored=$(bench_metric parley_messages_stored_total)
hz=$(getconf CLK_TCK)
join "$D/before" "$D/after" | awk -v m="${stored:-0}" -v hz="$hz" '
  { s = ($4 - $2) / hz; k = ($5 - $3) / hz; tot += s; ktot += k
    printf "%-16s %7.2f s  %7.1f us/msg  sys %5.1f\n", $1, s, m ? s * 1e6 / m : 0, m ? k * 1e6 / m : 0 }
  END { printf "%-16s %7.2f s  %7.1f us/msg  sys %5.1f  (%d messages stored; %.0f per server CPU-second)\n", "total", tot, m ? tot * 1e6 / m : 0, m ? ktot * 1e6 / m : 0, m, tot ? m / tot : 0 }'
join "$D/sw_before" "$D/sw_after" | awk -v m="${stored:-0}" '
  { v = $3 - $2; tv += v; printf "%-16s %9d wake-ups  %6.2f/msg\n", $1, v, m ? v / m : 0 }
  END { printf "%-16s %9d wake-ups  %6.2f/msg\n", "total", tv, m ? tv / m : 0 }'
c1=$(bench_metric parley_store_commits_total)
awk -v c="$(( ${c1%.*} - ${c0%.*} ))" -v m="${stored:-0}" -v wg="$(bench_metric parley_writer_gathers_total)" \
  'BEGIN { printf "store commits %d: %.1f messages per commit; writer gathers %s\n", c, c ? m / c : 0, wg == "" ? "-" : wg }'
[ -s "$D/bench_time" ] && awk -v m="${stored:-0}" '{ s = $1 + $2; printf "%-16s %7.2f s  %7.1f us/msg  (parley-bench process, user+sys, setup included)\n", "bench", s, m ? s * 1e6 / m : 0 }' "$D/bench_time"
