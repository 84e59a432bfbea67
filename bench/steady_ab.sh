#!/bin/bash
# bench/steady_ab.sh -- two parley builds side by side at fixed rates (the
# issue-8 "fixed 20,000 msgs/s" shape and a slower one), alternating
# A/B/A/B so that the machine's load falls on both alike, each run through
# bench/thread_cpu.sh so that one run gives the rate, the latency and the
# server's CPU and wake-ups per message.
#
#   bench/steady_ab.sh A_BUILD B_BUILD OUTDIR      (RUNS=3 rounds by default)
#   bench/steady_summary.py OUTDIR                 medians per build and rate
#
# RATES (default "20000 5000"), PAIRS (default rate / 20: 20 msgs/s per
# connection, the issue's shape; 1,000 pairs at 20,000/s), SECONDS_RUN
# (default 8). Each run writes
# OUTDIR/{A,B}.RATE.R.{json,txt,load}; parley-bench's JSON holds acked/s and
# the send->delivery percentiles, the .txt thread_cpu.sh's per-thread CPU,
# wake-ups and messages per store commit. Servers are started and stopped
# (by PID) by thread_cpu.sh.
set -u
[ $# -eq 3 ] || { echo "usage: $0 A_BUILD B_BUILD OUTDIR" >&2; exit 2; }
A=$1; B=$2; OUT=$3
RUNS=${RUNS:-3}; RATES=${RATES:-"20000 5000"}; PAIRS=${PAIRS:-}; SECONDS_RUN=${SECONDS_RUN:-8}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
for r in $(seq "$RUNS"); do
  for rate in $RATES; do
    for v in A B; do
      bin=$A; [ "$v" = B ] && bin=$B
      pairs=${PAIRS:-$((rate / 20))}
      cut -d' ' -f1 /proc/loadavg > "$OUT/$v.$rate.$r.load"
      "$HERE/thread_cpu.sh" "$bin" direct --pairs "$pairs" --rate "$rate" --seconds "$SECONDS_RUN" \
        --json "$OUT/$v.$rate.$r.json" > "$OUT/$v.$rate.$r.txt" 2>&1
      echo "$rate $v $r rc=$? load=$(cat "$OUT/$v.$rate.$r.load")->$(cut -d' ' -f1 /proc/loadavg)"
    done
  done
done
