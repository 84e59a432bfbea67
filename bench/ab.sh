#!/bin/bash
# bench/ab.sh -- two parley builds side by side in one window, alternating
# A/B/A/B so that the machine's load falls on both alike.
#
#   bench/ab.sh A_BUILD B_BUILD OUTDIR     (RUNS=3 rounds by default)
#
# A_BUILD and B_BUILD each hold parley and parley-bench (e.g. a tree from
# `git archive BASE | tar -x` built in its own dir, and this tree's build).
# parley-bench starts each server itself on a free loopback port and stops
# it. Every run writes OUTDIR/{A,B}.SHAPE.R.json and the 1-minute load
# average at its start in .load; bench/ab_summary.py prints the medians.
# B_ARGS: more parley-bench options for B only, e.g. the same build twice
# with encryption off next to on: B_ARGS=--e2e bench/ab.sh build build OUT
set -u
[ $# -eq 3 ] || { echo "usage: $0 A_BUILD B_BUILD OUTDIR" >&2; exit 2; }
A=$1; B=$2; OUT=$3
RUNS=${RUNS:-3}
B_ARGS=${B_ARGS:-}
mkdir -p "$OUT"
shapes=(
  "direct_max|direct --pairs 1000 --rate max --window 8 --seconds 8"
  "direct_20k|direct --pairs 1000 --rate 20000 --seconds 8"
  "live_1000|live --size 250 --rate 1000 --seconds 8"
  "group_all|group --size 250 --groups 1 --senders all --window 1 --seconds 8"
)
for s in "${shapes[@]}"; do
  name=${s%%|*}; args=${s#*|}
  for r in $(seq "$RUNS"); do
    for v in A B; do
      bin=$A; extra=""; [ "$v" = B ] && bin=$B && extra=$B_ARGS
      cut -d' ' -f1 /proc/loadavg > "$OUT/$v.$name.$r.load"
      # shellcheck disable=SC2086
      timeout 180 "$bin/parley-bench" $args $extra --parley "$bin/parley" --quiet --json "$OUT/$v.$name.$r.json" \
        > "$OUT/$v.$name.$r.out" 2>&1
      echo "$name $v $r rc=$? load=$(cat "$OUT/$v.$name.$r.load")->$(cut -d' ' -f1 /proc/loadavg)"
    done
  done
done
