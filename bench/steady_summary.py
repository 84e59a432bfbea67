#!/usr/bin/env python3
"""bench/steady_summary.py OUTDIR -- medians of bench/steady_ab.sh's runs.

Per offered rate and build: medians of acked/s, send->delivery p50, p99 and
p99.9, server CPU per message (thread_cpu.sh's total, as CPU-seconds per
1,000 messages), server wake-ups per message and messages per store
commit; each run's validity (deliveries == acked x receivers after the
drain) and the 1-minute load average at each run's start."""
import glob
import json
import re
import statistics
import sys

def txt_figures(path):
    cpu = wake = per_commit = bench = None
    try:
        for line in open(path):
            if line.startswith("total") and "us/msg" in line and "wake-ups" not in line:
                cpu = float(re.search(r"([\d.]+) us/msg", line).group(1))
            elif line.startswith("total") and "wake-ups" in line:
                wake = float(re.search(r"([\d.]+)/msg", line).group(1))
            elif line.startswith("store commits"):
                per_commit = float(re.search(r"([\d.]+) messages per commit", line).group(1))
            elif line.startswith("bench "):
                bench = float(re.search(r"([\d.]+) us/msg", line).group(1))
    except OSError:
        pass
    return cpu, wake, per_commit, bench

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")

def main(d):
    rates = sorted({int(f.split(".")[-3]) for f in glob.glob(f"{d}/*.json")}, reverse=True)
    print(f"{'rate':>6} build  {'acked/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} "
          f"{'CPU-s/1k':>8} {'wake/msg':>8} {'msg/commit':>10} {'bench us/msg':>12}  valid  load1")
    for rate in rates:
        for v in "AB":
            runs = []
            for f in sorted(glob.glob(f"{d}/{v}.{rate}.*.json")):
                try:
                    j = json.load(open(f))
                except (OSError, ValueError):
                    continue
                j["load"] = open(f[:-5] + ".load").read().strip()
                j["txt"] = txt_figures(f[:-5] + ".txt")
                runs.append(j)
            if not runs:
                continue
            g = lambda k: med([r.get(k) for r in runs])
            t = lambda i: med([r["txt"][i] for r in runs])
            cpu = t(0)
            print(f"{rate:>6} {v:5s}  {g('acked_per_s'):8.0f} {g('send_delivery_p50_ms'):8.1f} "
                  f"{g('send_delivery_p99_ms'):8.1f} {g('send_delivery_p99_9_ms'):9.1f} "
                  f"{cpu / 1000:8.3f} {t(1):8.2f} {t(2):10.1f} {t(3):12.1f}  "
                  f"{','.join(str(r.get('valid'))[0] for r in runs)}  {','.join(r['load'] for r in runs)}")

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: steady_summary.py OUTDIR")
    main(sys.argv[1])
