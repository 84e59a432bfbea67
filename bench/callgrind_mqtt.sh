#!/bin/bash
# bench/callgrind_mqtt.sh -- instructions per delivered message over MQTT
# and over WebSocket, one server binary: `parley serve` under callgrind,
# a fixed-rate direct run (PAIRS pairs at RATE messages/s for SECS s) by
# bench-peer-parley-mqtt (libmosquitto) or parley-bench (libparley), then
# SIGTERM (callgrind writes its counts) and the server's total
# instructions (every thread, start-up, registrations and shutdown
# included) divided by the messages delivered. As scripts/callgrind.sh,
# but the driver is timed, so compare the same arguments only.
#
#   bench/callgrind_mqtt.sh PARLEY_BINARY mqtt|ws [PAIRS RATE SECS]
#   (defaults 10 200 10; BUILD (default build) holds the drivers)
set -u
[ $# -ge 2 ] || { echo "usage: $0 PARLEY_BINARY mqtt|ws [PAIRS RATE SECS]" >&2; exit 2; }
BIN=$1; MODE=$2; PAIRS=${3:-10}; RATE=${4:-200}; SECS=${5:-10}
BUILD=${BUILD:-build}
D=$(mktemp -d /tmp/parley-cg-mqtt-XXXXXX); vpid=""
alive() { st=$(ps -o stat= -p "$1" 2>/dev/null); [ -n "$st" ] && [ "${st#Z}" = "$st" ]; }
stop_server() {   # SIGTERM, up to 120 s for callgrind to write, then SIGKILL
  [ -n "$vpid" ] || return 0
  kill -TERM "$vpid" 2>/dev/null
  i=0; while [ $i -lt 1200 ] && alive "$vpid"; do sleep 0.1; i=$((i + 1)); done
  alive "$vpid" && kill -KILL "$vpid" 2>/dev/null
  wait "$vpid" 2>/dev/null; vpid=""
}
trap 'stop_server; rm -rf "$D"' EXIT
trap 'exit 130' INT TERM
fp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WS=$(fp); MQ=$(fp)
valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file="$D/cg.out" "$BIN" serve --listen "127.0.0.1:$WS" \
  --mqtt-listen "127.0.0.1:$MQ" --data "$D/data" --fsync batch --log-level warn --send-rate 1000000 \
  --write-rate 1000000 --user-writer-share 65536 --drain-window 0 > "$D/server.log" 2>&1 &
vpid=$!
i=0; while [ $i -lt 1200 ] && alive "$vpid" && ! curl -s -o /dev/null "http://127.0.0.1:$WS/healthz"; do sleep 0.1; i=$((i + 1)); done
if [ "$MODE" = mqtt ]; then
  timeout 600 "$BUILD/bench-peer-parley-mqtt" direct --port "$MQ" --ws-port "$WS" --pairs "$PAIRS" --rate "$RATE" \
    --seconds "$SECS" > "$D/out.json" 2> "$D/driver.log"
else
  timeout 600 "$BUILD/parley-bench" direct --server "ws://127.0.0.1:$WS" --pairs "$PAIRS" --rate "$RATE" \
    --seconds "$SECS" --heartbeat 0 --quiet --json "$D/out.json" > "$D/driver.log" 2>&1
fi
curl -s "http://127.0.0.1:$WS/metrics" | grep -E "^parley_(acks_submitted|socket_reads|socket_writes|messages_stored|deliveries)_total " > "$D/metrics"
stop_server
python3 - "$D/cg.out" "$D/out.json" "$MODE" "$D/metrics" <<'PY'
import json, sys
ir = None
for l in open(sys.argv[1]):
    if l.startswith("summary:") or l.startswith("totals:"): ir = int(l.split()[1])
d = json.load(open(sys.argv[2]))
deliv = d.get("delivered_total") or 0
m = dict(l.split() for l in open(sys.argv[4]))
stored = float(m.get("parley_messages_stored_total", 0)) or 1
extra = " ".join("%s %.2f" % (k.replace("parley_", "").replace("_total", ""), float(v) / stored) for k, v in sorted(m.items())
                 if k != "parley_messages_stored_total")
if not ir or not deliv or d.get("valid") not in (True, "true"):
    print("%s: INVALID (instructions %s, delivered %s, valid %s)" % (sys.argv[3], ir, deliv, d.get("valid"))); sys.exit(1)
print("%s: %d instructions / %d delivered = %.0f instructions per delivered message; per stored message: %s"
      % (sys.argv[3], ir, deliv, ir / deliv, extra))
PY
