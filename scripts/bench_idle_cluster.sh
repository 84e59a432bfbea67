#!/bin/sh
# scripts/bench_idle_cluster.sh [--gateways K] [--steps N1,N2,...] [--dir DIR]
#                               [--out DIR] [--hold S] [--max-connections N]
#                               [--keep]
#
# Idle connections across many gateway processes (issue 13), on the real
# engines, and what each costs in parley and in Redis.
#
# One process may open 20,000 files here (`ulimit -Hn`), so 190,000
# connections need 10 or more gateway processes and a load generator over
# several processes. This script:
#   1. brings up, with scripts/cluster.sh, Redis Cluster, Cassandra (and
#      Kafka when parley has --kafka) and K + 1 parley nodes in DIR: node 1
#      has every role (it owns registration and the write path), nodes
#      2..K+1 are `--roles gateway` with `--max-connections N` (passed by a
#      PARLEY_BIN wrapper in DIR, so cluster.sh itself is unchanged);
#   2. registers the largest step's users once, on node 1, keeping them in
#      DIR/identities.bin (parley-bench --identities; Cassandra's data stays
#      in DIR too), so a later run, or a step, signs them in again instead;
#   3. for each step (a number of connections C, ascending):
#      - restarts the K gateways (SIGTERM by PID, then `cluster.sh up`,
#        which starts only what is not running), so every gateway's RSS
#        baseline is a fresh process;
#      - deletes the users' keys ({u:*}) left in Redis by earlier steps (a
#        key outlives its sessions: last seen), so that every session of
#        the step makes its key, as a user's first device does;
#      - runs `parley-bench connections --n C --server GW1,...,GWK
#        --spread even --identities DIR/identities.bin --hook ...`: the
#        first C users sign in and start sync, C/K on each gateway, from
#        ceil(C / 19,936) bench processes (each under its own file limit),
#        and are held with pings for --hold seconds;
#      - the hook records, once the users are registered and nothing is
#        connected ("base") and again while everything is held ("held"):
#        each gateway's VmRSS, its parley_connections and
#        parley_cluster_sessions (/metrics), each Redis master's
#        used_memory and DBSIZE, and the kernel's TCP sockets in use
#        (/proc/net/sockstat) and Slab (/proc/meminfo), machine-wide;
#      - writes OUT/step-C.json: the bench's figures, the rows above, and
#        per gateway (RSS held - RSS base) / connections held (the way
#        parley-bench connections measures one server: user space, kernel
#        socket memory not included), their median, and the Redis
#        used_memory delta / sessions written (bytes per session entry),
#        and the Slab delta / TCP sockets opened (kernel bytes per socket);
#      - stops at the first step that does not hold every connection, that
#        sheds or fails any, or before a step when MemAvailable is under
#        2 GiB + 8 KiB per connection of the step (two kernel sockets and
#        both user spaces per connection, with room), and says which.
#   4. prints a summary (one line per step) and writes OUT/summary.json;
#      then `cluster.sh down` (unless --keep).
#
# Defaults: --gateways 10, --steps 20000,50000,100000,190000, --dir
# build/idle-cluster, --out bench/results/idle-cluster-COMMIT, --hold 20,
# --max-connections 19500. Bounds: at most 15 gateways (parley-bench takes
# 16 URLs), at most 8 steps of at most 290,000 connections, each bench run
# killed after IDLE_STEP_TIMEOUT s (default 1800), the registration after
# IDLE_REGISTER_TIMEOUT s (default 3600); every process it starts
# (the bench's process group, the cluster by cluster.sh's PIDs) is stopped on
# every path, Ctrl-C included.
#
# PARLEY_BIN / PARLEY_BENCH: the binaries (default build/parley and
# build/parley-bench of this clone).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PARLEY=${PARLEY_BIN:-$ROOT/build/parley}
BENCH=${PARLEY_BENCH:-$ROOT/build/parley-bench}
STEP_TIMEOUT=${IDLE_STEP_TIMEOUT:-1800}
REGISTER_TIMEOUT=${IDLE_REGISTER_TIMEOUT:-3600}
GATEWAYS=10; STEPS=20000,50000,100000,190000; DIR=$ROOT/build/idle-cluster
OUT=""; HOLD=20; MAXCONN=19500; KEEP=""

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "bench_idle_cluster.sh: $*" >&2; exit 1; }
say() { echo "bench_idle_cluster.sh: $*" >&2; }

# ------------------------------------------------------ the measure hook
# `measure DIR FILE`: run by parley-bench --hook; one line per gateway and
# per Redis master into FILE.PHASE (PARLEY_BENCH_PHASE).
if [ "${1:-}" = measure ]; then
  [ $# -eq 3 ] || exit 2
  MDIR=$2; out="$3.${PARLEY_BENCH_PHASE:-unknown}"
  : >"$out"
  i=2
  while [ -f "$MDIR/node-$i.port" ]; do
    pid=$(cat "$MDIR/node-$i.pid" 2>/dev/null || echo 0)
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo -1)
    m=$(curl -s --max-time 5 "http://127.0.0.1:$(cat "$MDIR/node-$i.port")/metrics" || true)
    conns=$(printf '%s\n' "$m" | awk '$1 == "parley_connections" {print $2}')
    sess=$(printf '%s\n' "$m" | awk '$1 == "parley_cluster_sessions" {print $2}')
    echo "gateway node-$i $pid ${rss:--1} ${conns:--1} ${sess:--1}" >>"$out"
    i=$((i + 1))
  done
  # the kernel's side, machine-wide (other processes are in it): TCP
  # sockets in use and slab memory (struct sock, inode, file, epoll entry)
  tcp=$(awk '$1 == "TCP:" {print $3}' /proc/net/sockstat)
  slab=$(awk '$1 == "Slab:" {print $2}' /proc/meminfo)
  echo "kernel tcp_sockets ${tcp:--1} slab_kb ${slab:--1}" >>"$out"
  k=1
  for port in $(cat "$MDIR/redis/ports"); do
    used=$(redis-cli -p "$port" info memory | tr -d '\r' | awk -F: '$1 == "used_memory" {print $2}')
    keys=$(redis-cli -p "$port" dbsize | tr -d '\r')
    echo "redis redis-$k $port ${used:--1} ${keys:--1}" >>"$out"
    k=$((k + 1))
  done
  exit 0
fi

while [ $# -ge 1 ]; do
  case $1 in
    --keep) KEEP=1; shift; continue ;;
    --help|-h) usage ;;
  esac
  [ $# -ge 2 ] || usage
  case $1 in
    --gateways) GATEWAYS=$2 ;;
    --steps) STEPS=$2 ;;
    --dir) DIR=$2 ;;
    --out) OUT=$2 ;;
    --hold) HOLD=$2 ;;
    --max-connections) MAXCONN=$2 ;;
    *) usage ;;
  esac
  shift 2
done
is_count() { case $1 in ''|*[!0-9]*) return 1 ;; esac; return 0; }
is_count "$GATEWAYS" && [ "$GATEWAYS" -ge 1 ] && [ "$GATEWAYS" -le 15 ] || die "--gateways 1..15"
is_count "$HOLD" && [ "$HOLD" -ge 1 ] && [ "$HOLD" -le 600 ] || die "--hold 1..600 (seconds)"
is_count "$MAXCONN" && [ "$MAXCONN" -ge 1 ] || die "--max-connections N"
STEPS=$(echo "$STEPS" | tr ',' ' ')
n=0
for c in $STEPS; do
  is_count "$c" && [ "$c" -ge 1 ] && [ "$c" -le 290000 ] || die "--steps: counts 1..290000"
  n=$((n + 1))
done
[ "$n" -ge 1 ] && [ "$n" -le 8 ] || die "--steps: 1 to 8 counts"
[ -x "$PARLEY" ] || die "no parley binary at $PARLEY (make build, or set PARLEY_BIN)"
[ -x "$BENCH" ] || die "no parley-bench at $BENCH (make build, or set PARLEY_BENCH)"
command -v redis-cli >/dev/null || die "needs redis-cli"
command -v curl >/dev/null || die "needs curl"
command -v python3 >/dev/null || die "needs python3"
if [ -z "$OUT" ]; then
  OUT=$ROOT/bench/results/idle-cluster-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
fi
mkdir -p "$DIR" "$OUT"
DIR=$(cd "$DIR" && pwd); OUT=$(cd "$OUT" && pwd)
NODES=$((GATEWAYS + 1))
CLUSTER="$ROOT/scripts/cluster.sh"

# Every `parley serve` of this cluster gets --max-connections; the rest of
# its command line is cluster.sh's (so its PID checks hold).
WRAP=$DIR/parley-idle-wrapper.sh
cat >"$WRAP" <<EOF
#!/bin/sh
# written by scripts/bench_idle_cluster.sh: cluster.sh's PARLEY_BIN
if [ "\${1:-}" = serve ] && [ "\${2:-}" != --help ]; then
  exec "$PARLEY" "\$@" --max-connections $MAXCONN
fi
exec "$PARLEY" "\$@"
EOF
chmod 755 "$WRAP"

BENCH_PID=""
cleanup() {
  rc=$?
  trap - EXIT INT TERM
  if [ -n "$BENCH_PID" ]; then
    # its own process group (setsid below): the parent and its workers
    kill -TERM "-$BENCH_PID" 2>/dev/null || true
    t=0
    while [ $t -lt 100 ] && kill -0 "$BENCH_PID" 2>/dev/null; do sleep 0.1; t=$((t + 1)); done
    kill -KILL "-$BENCH_PID" 2>/dev/null || true
  fi
  if [ -z "$KEEP" ] || [ "$rc" -ne 0 ]; then
    say "stopping the cluster in $DIR"
    "$CLUSTER" down --dir "$DIR" >&2 || true
  else
    say "--keep: the cluster in $DIR is still up (scripts/cluster.sh down --dir $DIR)"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# node I's PID when it is this cluster's node I (as cluster.sh checks it)
node_pid() {
  pid=$(cat "$DIR/node-$1.pid" 2>/dev/null || true)
  case $pid in ''|*[!0-9]*) return 0 ;; esac
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- " --data $DIR/node-$1/data " && echo "$pid"
  return 0
}

cluster_up() {
  PARLEY_BIN=$WRAP "$CLUSTER" up --nodes "$NODES" --dir "$DIR" >"$DIR/urls" 2>>"$DIR/idle.log" \
    || { tail -n 20 "$DIR/idle.log" >&2; die "cluster.sh up failed (log: $DIR/idle.log)"; }
}

restart_gateways() {
  i=2
  while [ "$i" -le "$NODES" ]; do
    pid=$(node_pid "$i")
    if [ -n "$pid" ]; then
      kill -TERM "$pid" 2>/dev/null || true
      t=0
      while [ $t -lt 300 ] && [ -n "$(node_pid "$i")" ]; do sleep 0.1; t=$((t + 1)); done
      [ -z "$(node_pid "$i")" ] || kill -KILL "$pid" 2>/dev/null || true
      t=0
      while [ $t -lt 100 ] && [ -n "$(node_pid "$i")" ]; do sleep 0.1; t=$((t + 1)); done
    fi
    i=$((i + 1))
  done
  cluster_up
}

mem_available_kb() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }

say "cluster: $GATEWAYS gateways + node 1 in $DIR (engines start first; Cassandra takes a minute or more)"
t0=$(date +%s)
cluster_up
say "cluster up in $(( $(date +%s) - t0 )) s"
REGISTER_URL=$(sed -n 1p "$DIR/urls")
GW_URLS=$(sed -n "2,${NODES}p" "$DIR/urls" | paste -sd, -)

# The users, once: registering costs the chat node a Cassandra read, a
# lightweight transaction and a batch each, on its one accounts thread
# (~100/s here), so they are kept in DIR/identities.bin (with Cassandra's
# data in DIR) and every step signs the first C of them in again.
MAXSTEP=0
for c in $STEPS; do [ "$c" -gt "$MAXSTEP" ] && MAXSTEP=$c; done
IDS=$DIR/identities.bin
say "users: $MAXSTEP in $IDS (registered on node 1 where missing; at ~100/s that takes a while)"
ts=$(date +%s)
setsid timeout -s KILL "$REGISTER_TIMEOUT" "$BENCH" connections --n "$MAXSTEP" --register-only --quiet \
  --server "$GW_URLS" --register-server "$REGISTER_URL" --identities "$IDS" \
  --json "$OUT/register.json" >"$OUT/register.out" 2>"$OUT/register.err" &
BENCH_PID=$!
brc=0
wait "$BENCH_PID" || brc=$?
BENCH_PID=""
[ "$brc" -eq 0 ] || { tail -n 5 "$OUT/register.err" >&2; die "registering the users failed ($brc; log $OUT/register.err)"; }
say "users ready in $(( $(date +%s) - ts )) s: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("registered"), "registered,", d.get("registered_from_file"), "of them from the file")' "$OUT/register.json")"

STOPPED_BY=""
DONE_STEPS=""
for C in $STEPS; do
  per_gw=$(( (C + GATEWAYS - 1) / GATEWAYS ))
  if [ "$per_gw" -gt "$MAXCONN" ]; then
    STOPPED_BY="step $C: $per_gw connections per gateway is over --max-connections $MAXCONN (more gateways needed)"
    break
  fi
  avail=$(mem_available_kb)
  need=$(( C * 8 + 2 * 1024 * 1024 ))
  if [ "$avail" -lt "$need" ]; then
    STOPPED_BY="step $C: MemAvailable ${avail} KiB, under ${need} KiB (8 KiB per connection + 2 GiB)"
    break
  fi
  say "step $C: restarting the gateways (fresh RSS baselines)"
  restart_gateways
  # A user's key outlives its sessions (last seen, 30 days): without this a
  # step's sessions would land in keys the earlier steps made, and the
  # figure would be a further device's (~32 B), not a session's with its
  # key. The bench users' keys go, each from the master that holds it (one
  # key per UNLINK: keys of different slots cannot share a command; the
  # node directory's {nodes.*} shards stay).
  for port in $(cat "$DIR/redis/ports"); do
    redis-cli -p "$port" --scan --pattern '{u:*' | sed 's/^/UNLINK /' | redis-cli -p "$port" >/dev/null
  done
  GW_URLS=$(sed -n "2,${NODES}p" "$DIR/urls" | paste -sd, -)
  SD=$OUT/step-$C
  mkdir -p "$SD"
  rm -f "$SD"/measure.* "$SD/bench.json"
  load0=$(cut -d' ' -f1 /proc/loadavg)
  ts=$(date +%s)
  say "step $C: signing $C users in again, $C connections over $GATEWAYS gateways (hold ${HOLD}s)"
  setsid timeout -s KILL "$STEP_TIMEOUT" "$BENCH" connections --n "$C" --hold "$HOLD" --quiet \
    --server "$GW_URLS" --spread even --register-server "$REGISTER_URL" --identities "$IDS" \
    --hook "sh '$ROOT/scripts/bench_idle_cluster.sh' measure '$DIR' '$SD/measure'" --json "$SD/bench.json" \
    >"$SD/bench.out" 2>"$SD/bench.err" &
  BENCH_PID=$!
  brc=0
  wait "$BENCH_PID" || brc=$?
  BENCH_PID=""
  secs=$(( $(date +%s) - ts ))
  load1=$(cut -d' ' -f1 /proc/loadavg)
  if [ "$brc" -ne 0 ] || [ ! -f "$SD/bench.json" ] || [ ! -f "$SD/measure.held" ]; then
    tail -n 5 "$SD/bench.err" >&2 || true
    STOPPED_BY="step $C: parley-bench exited $brc after ${secs}s (log: $SD/bench.err)"
    break
  fi
  verdict=$(python3 - "$SD" "$C" "$GATEWAYS" "$secs" "$load0" "$load1" "$OUT/step-$C.json" <<'PY'
import json, statistics, sys
sd, asked, k, secs, load0, load1, out = sys.argv[1:]
asked, k = int(asked), int(k)
def rows(phase):
    g, r = {}, {}
    for line in open(f"{sd}/measure.{phase}"):
        f = line.split()
        if f[0] == "gateway":
            g[f[1]] = dict(pid=int(f[2]), rss_kb=int(f[3]), connections=int(f[4]), sessions=int(f[5]))
        elif f[0] == "redis":
            r[f[1]] = dict(port=int(f[2]), used_memory=int(f[3]), keys=int(f[4]))
        elif f[0] == "kernel":
            r["kernel"] = dict(tcp_sockets=int(f[2]), slab_kb=int(f[4]))
    kern = r.pop("kernel", None)
    return g, r, kern
gb, rb, kb = rows("base")
gh, rh, kh = rows("held")
bench = json.load(open(f"{sd}/bench.json"))
gws = []
for name in sorted(gh, key=lambda s: int(s.split("-")[1])):
    b, h = gb.get(name, {}), gh[name]
    row = dict(node=name, pid=h["pid"], rss_base_kb=b.get("rss_kb", -1), rss_held_kb=h["rss_kb"],
               connections=h["connections"], sessions=h["sessions"])
    if b.get("pid") == h["pid"] and h["connections"] > 0 and b["rss_kb"] > 0:
        row["bytes_per_conn"] = round((h["rss_kb"] - b["rss_kb"]) * 1024 / h["connections"], 1)
    gws.append(row)
per = [g["bytes_per_conn"] for g in gws if "bytes_per_conn" in g]
used0 = sum(v["used_memory"] for v in rb.values()); used1 = sum(v["used_memory"] for v in rh.values())
keys0 = sum(v["keys"] for v in rb.values()); keys1 = sum(v["keys"] for v in rh.values())
sessions = sum(max(g["sessions"], 0) for g in gws)
conns = sum(max(g["connections"], 0) for g in gws)
res = dict(system="parley", scenario="idle_cluster", asked=asked, gateways=k,
           bench_processes=bench.get("bench_processes"), registered=bench.get("registered"),
           registered_from_file=bench.get("registered_from_file"),
           register_rate=bench.get("register_rate"), held=bench.get("held"),
           connect_rate=bench.get("connect_rate"), shed=bench.get("shed"), errors=bench.get("errors"),
           hold_s=bench.get("hold_s"), bench_bytes_per_conn=bench.get("bench_bytes_per_conn"),
           gateway_connections=conns, registry_sessions=sessions,
           gateway_bytes_per_conn_median=round(statistics.median(per), 1) if per else None,
           gateway_bytes_per_conn_min=min(per) if per else None,
           gateway_bytes_per_conn_max=max(per) if per else None,
           redis_used_memory_base=used0, redis_used_memory_held=used1,
           redis_keys_base=keys0, redis_keys_held=keys1,
           redis_bytes_per_session=round((used1 - used0) / sessions, 1) if sessions else None,
           kernel_tcp_sockets_base=kb and kb["tcp_sockets"], kernel_tcp_sockets_held=kh and kh["tcp_sockets"],
           kernel_slab_kb_base=kb and kb["slab_kb"], kernel_slab_kb_held=kh and kh["slab_kb"],
           kernel_slab_bytes_per_socket=round((kh["slab_kb"] - kb["slab_kb"]) * 1024 / (kh["tcp_sockets"] - kb["tcp_sockets"]), 1)
               if kb and kh and kh["tcp_sockets"] > kb["tcp_sockets"] else None,
           step_seconds=int(secs), load_avg_1m_start=float(load0), load_avg_1m_end=float(load1),
           gateways_detail=gws, redis_base=rb, redis_held=rh,
           notes=["bytes per connection: gateway VmRSS held - VmRSS of the fresh gateway with nothing "
                  "connected, over its parley_connections; kernel socket memory not included",
                  "redis bytes per session: sum over masters of used_memory held - base, over the sum "
                  "of the gateways' parley_cluster_sessions",
                  "kernel slab bytes per socket: machine-wide /proc/meminfo Slab held - base, over the "
                  "TCP sockets in use (both ends of each connection are on this host); other processes are in it"])
json.dump(res, open(out, "w"), indent=2)
ok = bench.get("held") == asked and conns == asked and sessions == asked and not bench.get("shed") and not bench.get("errors")
print(("ok " if ok else "short ") + f"held={bench.get('held')} gateway_conns={conns} sessions={sessions} "
      f"shed={bench.get('shed')} errors={bench.get('errors')} "
      f"B/conn median={res['gateway_bytes_per_conn_median']} redis B/session={res['redis_bytes_per_session']} "
      f"kernel slab B/socket={res['kernel_slab_bytes_per_socket']} "
      f"register/s={bench.get('register_rate')} connect/s={bench.get('connect_rate')} {secs}s load {load0}->{load1}")
PY
  )
  say "step $C: $verdict"
  DONE_STEPS="$DONE_STEPS $C"
  case $verdict in
    ok*) ;;
    *) STOPPED_BY="step $C did not hold every connection: $verdict"; break ;;
  esac
done

python3 - "$OUT" "$STOPPED_BY" "$DONE_STEPS" <<'PY'
import json, sys
out, stopped, steps = sys.argv[1], sys.argv[2], sys.argv[3].split()
rows = [json.load(open(f"{out}/step-{c}.json")) for c in steps]
json.dump(dict(steps=rows and [{k: v for k, v in r.items() if k not in ("gateways_detail", "redis_base", "redis_held")} for r in rows],
               stopped_by=stopped or "every step held"), open(f"{out}/summary.json", "w"), indent=2)
print(f"{'asked':>8} {'held':>8} {'gw':>3} {'B/conn med':>10} {'min':>7} {'max':>7} {'redis B/sess':>12} {'register/s':>10} {'connect/s':>9} {'s':>5}")
for r in rows:
    print(f"{r['asked']:>8} {r['held']:>8} {r['gateways']:>3} {r['gateway_bytes_per_conn_median']!s:>10} "
          f"{r['gateway_bytes_per_conn_min']!s:>7} {r['gateway_bytes_per_conn_max']!s:>7} "
          f"{r['redis_bytes_per_session']!s:>12} {r['register_rate'] or 0:>10.0f} {r['connect_rate'] or 0:>9.0f} {r['step_seconds']:>5}")
print("stopped by: " + (stopped or "nothing: every step held"))
PY
