#!/bin/sh
# tests/cluster/test_cluster_script.sh -- scripts/cluster.sh on the real
# engines: `up --nodes 2` prints one ws:// URL per node and nothing else,
# each node's /healthz is 200, the node link's secret DIR/cluster-secret is
# made 0600 and passed to every node (when --help lists --cluster-secret),
# a parley-cli user on URL 1 and another on
# URL 2 exchange a message both ways, a second `up` changes nothing, and
# `down` (twice) leaves no process of the recorded PIDs alive and no port
# listening. PASS/FAIL lines and a CASES line, as tests/check.h prints.
#
# While `parley serve --help` has no --roles, two nodes are refused (that
# refusal is a case), and the rest runs on one node: both users on URL 1,
# with a NOTE saying so. A build that lists --roles but refuses
# `--roles gateway` at start (no forwarding yet) is the same, after a case
# that the refused node 2 leaves node 1 and the engines running.
#
# Environment: PARLEY_BIN (default build/parley), PARLEY_CLI (default
# parley-cli next to PARLEY_BIN). Needs Java 17, Maven and redis-server
# (scripts/install-deps.sh); tests/run.sh skips it without them.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PARLEY_BIN=${PARLEY_BIN:-$ROOT/build/parley}
case $PARLEY_BIN in /*) ;; *) PARLEY_BIN=$(pwd)/$PARLEY_BIN ;; esac
PARLEY_CLI=${PARLEY_CLI:-$(dirname "$PARLEY_BIN")/parley-cli}
export PARLEY_BIN
CLUSTER="$ROOT/scripts/cluster.sh"
passed=0; failed=0

pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
finish() { echo "CASES $passed passed $failed failed"; [ "$failed" -eq 0 ]; exit $?; }

WORK=$(mktemp -d /tmp/parley-cluster-test-XXXXXX)
DIR=$WORK/cluster
# whatever happens, everything this test started is stopped by its PIDs
trap '"$CLUSTER" down --dir "$DIR" >/dev/null 2>&1; rm -rf "$WORK"' EXIT

if "$PARLEY_BIN" serve --help 2>&1 | grep -q -- '^ *--roles '; then
  NODES=2
else
  NODES=1
  # refused before anything starts
  if "$CLUSTER" up --nodes 2 --dir "$WORK/refused" >"$WORK/refused.out" 2>"$WORK/refused.err"; then
    fail refuses_two_nodes_without_roles "up --nodes 2 succeeded without --roles"
  elif [ -s "$WORK/refused.out" ] || [ -e "$WORK/refused" ] || ! grep -q -- '--roles' "$WORK/refused.err"; then
    fail refuses_two_nodes_without_roles "stdout '$(cat "$WORK/refused.out")', dir made: $([ -e "$WORK/refused" ] && echo yes || echo no), stderr '$(cat "$WORK/refused.err")'"
  else
    pass refuses_two_nodes_without_roles
  fi
  echo "NOTE parley serve has no --roles: the cluster cases ran with one node (both users on URL 1)"
fi

# ---- up: the engines and node 1, then (with --roles) node 2 added to the
# running cluster
up_failed() { # rc, what
  tail -n 30 "$WORK/up.err" | sed 's/^/  /'
  for f in "$DIR"/node-*.log; do [ -f "$f" ] && { echo "  $f:"; tail -n 20 "$f" | sed 's/^/    /'; }; done
  fail up "cluster.sh up $2 exited $1"
  finish
}
"$CLUSTER" up --nodes 1 --dir "$DIR" >"$WORK/up.out" 2>"$WORK/up.err" || up_failed $? "--nodes 1"
if [ "$NODES" = 2 ]; then
  cp "$WORK/up.out" "$WORK/up1.out"
  "$CLUSTER" up --nodes 2 --dir "$DIR" >"$WORK/up.out" 2>"$WORK/up.err"
  rc=$?
  if [ $rc -ne 0 ]; then
    # a build that lists --roles but serves only all three roles refuses
    # node 2 at its start (README "Nodes"); that, and nothing else, is
    # taken as "no gateway-only nodes yet": node 1 and the engines must
    # still run (a failed up stops only what it started)
    if grep -q 'roles: this build serves only' "$DIR/node-2.log" 2>/dev/null; then
      if [ -z "$(cat "$WORK/up.out")" ] && [ ! -e "$DIR/node-2.pid" ] &&
         kill -0 "$(cat "$DIR/node-1.pid" 2>/dev/null)" 2>/dev/null &&
         "$CLUSTER" status --dir "$DIR" 2>/dev/null | grep -q '^cassandra running '; then
        pass refused_gateway_node_leaves_the_rest_running
      else
        fail refused_gateway_node_leaves_the_rest_running "stdout '$(cat "$WORK/up.out")', $(ls "$DIR")"
      fi
      echo "NOTE parley serve refuses --roles gateway (no forwarding yet): the cluster cases ran with one node (both users on URL 1)"
      NODES=1
      cp "$WORK/up1.out" "$WORK/up.out"
    else
      up_failed $rc "--nodes 2"
    fi
  fi
fi
lines=$(wc -l <"$WORK/up.out")
good=$(grep -c '^ws://127\.0\.0\.1:[0-9][0-9]*$' "$WORK/up.out")
pids_ok=1
i=1
while [ $i -le "$NODES" ]; do
  pid=$(cat "$DIR/node-$i.pid" 2>/dev/null)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || pids_ok=0
  i=$((i + 1))
done
if [ "$lines" -eq "$NODES" ] && [ "$good" -eq "$NODES" ] && [ $pids_ok = 1 ]; then
  pass up_prints_one_url_per_node
else
  fail up_prints_one_url_per_node "stdout '$(cat "$WORK/up.out")' ($lines lines, $good URLs), node PIDs alive: $pids_ok"
fi
URL1=$(sed -n 1p "$WORK/up.out")
URL2=$(sed -n "${NODES}p" "$WORK/up.out")

# ---- /healthz of each node
health_ok=1; why=""
for url in $(cat "$WORK/up.out"); do
  port=${url##*:}
  code=$(python3 -c 'import sys,urllib.request
try: print(urllib.request.urlopen(sys.argv[1], timeout=10).status)
except Exception as e: print(getattr(e, "code", 0))' "http://127.0.0.1:$port/healthz")
  [ "$code" = 200 ] || { health_ok=0; why="$why $port:$code"; }
done
if [ $health_ok = 1 ]; then pass every_node_healthy; else fail every_node_healthy "/healthz:$why"; fi

# ---- the node link's secret: made by up, owner-only, passed to every node
if "$PARLEY_BIN" serve --help 2>&1 | grep -q -- '--cluster-secret'; then
  secret_ok=1; why=""
  f="$DIR/cluster-secret"
  if [ ! -f "$f" ]; then secret_ok=0; why="no $f"
  elif [ "$(stat -c %a "$f")" != 600 ]; then secret_ok=0; why="mode $(stat -c %a "$f")"
  elif [ "$(stat -c %s "$f")" -lt 32 ]; then secret_ok=0; why="$(stat -c %s "$f") bytes"
  else
    for i in $(seq 1 "$NODES"); do
      pid=$(cat "$DIR/node-$i.pid" 2>/dev/null)
      tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--cluster-secret $f " ||
        { secret_ok=0; why="node-$i (pid $pid) runs without --cluster-secret $f"; }
    done
  fi
  if [ $secret_ok = 1 ]; then pass link_secret_made_private_and_passed; else fail link_secret_made_private_and_passed "$why"; fi
fi

# ---- two users, one per node, a message each way
cli() { timeout 60 "$PARLEY_CLI" "$@"; }
A=$WORK/alice; B=$WORK/bob
msg_ok=0; why=""
if ! cli --state "$A" --server "$URL1" register alice >/dev/null 2>"$WORK/cli.err"; then why="register alice on $URL1"
elif ! cli --state "$B" --server "$URL2" register bob >/dev/null 2>>"$WORK/cli.err"; then why="register bob on $URL2"
elif ! conv=$(cli --state "$A" direct bob 2>>"$WORK/cli.err"); then why="alice: direct bob"
elif ! cli --state "$B" accept "$conv" 2>>"$WORK/cli.err"; then why="bob: accept"
elif ! cli --state "$A" send "$conv" "hello from node 1" >/dev/null 2>>"$WORK/cli.err"; then why="alice: send"
elif ! cli --state "$B" send "$conv" "hello from node $NODES" >/dev/null 2>>"$WORK/cli.err"; then why="bob: send"
else
  # each waits (bounded) until the other's message is there: delivery
  # across nodes is asynchronous, sync is the truth
  got_b=0; got_a=0; t=0
  while [ $t -lt 30 ] && { [ $got_b = 0 ] || [ $got_a = 0 ]; }; do
    [ $got_b = 1 ] || { cli --state "$B" sync --wait 1 >>"$WORK/bob.sync" 2>>"$WORK/cli.err"; grep -q '"text":"hello from node 1"' "$WORK/bob.sync" && got_b=1; }
    [ $got_a = 1 ] || { cli --state "$A" sync --wait 1 >>"$WORK/alice.sync" 2>>"$WORK/cli.err"; grep -q "\"text\":\"hello from node $NODES\"" "$WORK/alice.sync" && got_a=1; }
    t=$((t + 1))
  done
  if [ $got_a = 1 ] && [ $got_b = 1 ]; then msg_ok=1; else why="bob got alice's: $got_b, alice got bob's: $got_a"; fi
fi
# the users' state names the node each registered with
grep -q "^server $URL1\$" "$A/identity" 2>/dev/null || [ $msg_ok = 0 ] || { msg_ok=0; why="alice's state does not name $URL1"; }
if [ $msg_ok = 1 ]; then pass messages_both_ways_across_nodes
else tail -n 5 "$WORK/cli.err" | sed 's/^/  /'; fail messages_both_ways_across_nodes "$why"; fi

# ---- --kafka: every node runs with the broker, and the two sends above went
# through the 'sends' topic to the chat owner (node 1), which committed them
if "$PARLEY_BIN" serve --help 2>&1 | grep -q -- '--kafka'; then
  kafka_ok=1; why=""
  for i in $(seq 1 "$NODES"); do
    pid=$(cat "$DIR/node-$i.pid" 2>/dev/null)
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--kafka 127.0.0.1:[0-9]" ||
      { kafka_ok=0; why="node-$i (pid $pid) runs without --kafka"; }
  done
  port1=${URL1##*:}
  commits=$(python3 -c 'import sys,urllib.request
try:
    for l in urllib.request.urlopen(sys.argv[1], timeout=10).read().decode().splitlines():
        if l.startswith("parley_kafka_owner_commits_total "): print(int(float(l.split()[1])))
except Exception: print(0)' "http://127.0.0.1:$port1/metrics")
  [ $kafka_ok = 0 ] || [ "${commits:-0}" -gt 0 ] || { kafka_ok=0; why="node 1 committed no 'sends' offsets (${commits:-none})"; }
  if [ $kafka_ok = 1 ]; then pass sends_through_kafka; else fail sends_through_kafka "$why"; fi
fi

# ---- up again: nothing new
pids_before=$(cat "$DIR"/node-*.pid | tr '\n' ' ')
"$CLUSTER" up --nodes "$NODES" --dir "$DIR" >"$WORK/up2.out" 2>"$WORK/up2.err"
rc=$?
pids_after=$(cat "$DIR"/node-*.pid | tr '\n' ' ')
if [ $rc -eq 0 ] && cmp -s "$WORK/up.out" "$WORK/up2.out" && [ "$pids_before" = "$pids_after" ]; then
  pass second_up_changes_nothing
else
  fail second_up_changes_nothing "rc $rc, URLs '$(cat "$WORK/up2.out")', PIDs $pids_before -> $pids_after"
fi

# ---- status
if "$CLUSTER" status --dir "$DIR" >"$WORK/status.out" 2>&1 &&
   [ "$(grep -c '^node-[0-9]* running ' "$WORK/status.out")" -eq "$NODES" ] &&
   grep -q '^cassandra running ' "$WORK/status.out" &&
   [ "$(grep -c '^redis-[0-9] running ' "$WORK/status.out")" -eq 3 ]; then
  pass status_lists_every_part
else
  fail status_lists_every_part "$(tr '\n' ';' <"$WORK/status.out")"
fi

# ---- down: every recorded PID gone, every port closed; twice is fine
pids="$pids_after $(cat "$DIR"/redis/redis-*.pid "$DIR"/cassandra/cassandra.pid "$DIR"/kafka/kafka.pid 2>/dev/null | tr '\n' ' ')"
ports="$(cat "$DIR"/node-*.port "$DIR"/node-*.internal-port "$DIR"/redis/ports "$DIR"/cassandra/port "$DIR"/kafka/port 2>/dev/null | tr '\n' ' ')"
"$CLUSTER" down --dir "$DIR" >"$WORK/down.out" 2>&1
rc1=$?
"$CLUSTER" down --dir "$DIR" >>"$WORK/down.out" 2>&1
rc2=$?
alive=""
for p in $pids; do
  st=$(ps -o stat= -p "$p" 2>/dev/null || true)
  case $st in ''|Z*) ;; *) alive="$alive $p" ;; esac   # a zombie has exited (PID 1 reaps late here)
done
listening=""
for port in $ports; do
  ss -Htln "sport = :$port" 2>/dev/null | grep -q . && listening="$listening $port"
done
if [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && [ -z "$alive" ] && [ -z "$listening" ] && [ -n "$pids" ] && [ -n "$ports" ]; then
  pass down_stops_everything
else
  fail down_stops_everything "down $rc1 then $rc2; alive:${alive:- none}; listening:${listening:- none} (of PIDs $pids; ports $ports)"
fi
finish
