#!/usr/bin/env python3
"""bench/ab_summary.py OUTDIR -- medians of bench/ab.sh's runs, A and B.

Per shape and build: the medians of acked/s, deliveries/s and p50/p99
send->delivery, each run's validity (deliveries == acked x receivers after
the drain) and the 1-minute load average at each run's start."""
import glob
import json
import statistics
import sys

SHAPES = ["direct_max", "direct_20k", "live_1000", "group_all"]
KEYS = ["acked_per_s", "deliveries_per_s", "send_delivery_p50_ms", "send_delivery_p99_ms"]

def main(d):
    for s in SHAPES:
        for v in "AB":
            runs = []
            for f in sorted(glob.glob(f"{d}/{v}.{s}.*.json")):
                try:
                    j = json.load(open(f))
                except (OSError, ValueError):
                    continue
                j["load"] = open(f[:-5] + ".load").read().strip()
                runs.append(j)
            if not runs:
                continue
            med = [statistics.median([r.get(k) or 0 for r in runs]) for k in KEYS]
            # --e2e runs (B_ARGS=--e2e): ciphertext size and undecryptable deliveries
            e2e = ""
            if any(r.get("e2e") == "on" for r in runs):
                e2e = (f"  body on wire {runs[0].get('wire_body_bytes', 0):.0f} B"
                       f"  decrypt errors {sum(r.get('decrypt_errors', 0) for r in runs):.0f}")
            print(f"{s:11s} {v}  acked/s {med[0]:8.0f}  deliveries/s {med[1]:9.0f}  "
                  f"p50 {med[2]:8.1f} ms  p99 {med[3]:8.1f} ms  "
                  f"valid {','.join(str(r.get('valid')) for r in runs)}  load1 {','.join(r['load'] for r in runs)}{e2e}")

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ab_summary.py OUTDIR")
    main(sys.argv[1])
