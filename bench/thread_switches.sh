#!/bin/bash
# bench/thread_switches.sh -- wake-ups per message, per thread, for one
# bench run: the companion of bench/thread_cpu.sh (same server, same
# arguments), counting context switches instead of CPU time.
#
#   bench/thread_switches.sh BUILD parley-bench-args...
#   e.g. bench/thread_switches.sh build direct --pairs 1000 --rate 20000 --seconds 8
#
# A thread that sleeps in epoll_wait/poll and is woken makes one voluntary
# context switch, so voluntary switches per stored message
# (parley_messages_stored_total) are that thread's wake-ups per message.
# Reads voluntary_ctxt_switches and nonvoluntary_ctxt_switches of every
# thread from /proc/PID/task/*/status before and after the run, and prints
# them per thread name and per message, then the server's socket reads and
# writes per message from /metrics when the build exports them. The server
# is stopped by its PID on every path.
set -u
[ $# -ge 2 ] || { echo "usage: $0 BUILD parley-bench-args..." >&2; exit 2; }
B=$1; shift
. "$(dirname "$0")/bench_server.sh"
bench_server_start "$B" switches
switches() { for t in /proc/"$SP"/task/*; do
               echo "$(cat "$t/comm") $(awk '/^voluntary_ctxt_switches/ {v=$2} /^nonvoluntary_ctxt_switches/ {n=$2} END {print v, n}' "$t/status")"
             done | awk '{v[$1]+=$2; n[$1]+=$3} END {for (k in v) print k, v[k], n[k]}' | sort; }
switches > "$D/before"
r0=$(bench_metric parley_socket_reads_total); w0=$(bench_metric parley_socket_writes_total); f0=$(bench_metric parley_frames_out_total)
echo "load1 $(cut -d' ' -f1 /proc/loadavg) at start"
bench_run "$B" "$@"
switches > "$D/after"
r1=$(bench_metric parley_socket_reads_total); w1=$(bench_metric parley_socket_writes_total); f1=$(bench_metric parley_frames_out_total)
bench_summary
stored=$(bench_metric parley_messages_stored_total)
join "$D/before" "$D/after" | awk -v m="${stored:-0}" '
  { v = $4 - $2; n = $5 - $3; tv += v; tn += n
    printf "%-16s %9d voluntary %6.2f/msg  %9d involuntary %6.2f/msg\n", $1, v, m ? v / m : 0, n, m ? n / m : 0 }
  END { printf "%-16s %9d voluntary %6.2f/msg  %9d involuntary %6.2f/msg  (%d messages stored)\n", "total", tv, m ? tv / m : 0, tn, m ? tn / m : 0, m }'
if [ -n "$w1" ] && [ -n "${stored:-}" ] && [ "${stored%.*}" -gt 0 ]; then
  awk -v r="$((${r1%.*} - ${r0%.*}))" -v w="$((${w1%.*} - ${w0%.*}))" -v f="$((${f1%.*} - ${f0%.*}))" -v m="$stored" \
    'BEGIN { printf "sockets: %.2f reads, %.2f writes, %.2f frames out per message (%.2f frames per write)\n", r / m, w / m, f / m, w ? f / w : 0 }'
fi
