#!/bin/sh
# scripts/kafka.sh start|stop|status --dir DIR [--port P] [--controller-port C] [--set KEY=VALUE]...
#
# One Apache Kafka broker in KRaft mode (broker and controller in one
# process) on 127.0.0.1, its config, data, log and PID file all in DIR.
# The jars come from Maven Central through a throwaway pom
# (`mvn dependency:copy-dependencies`) into $KAFKA_CACHE (default
# .cache/kafka-VERSION, ignored by git), once; later starts reuse them.
#
#   start   formats DIR (if new) and starts the broker; waits until it is
#           ready (port open and "Kafka Server started" logged, at most
#           KAFKA_START_TIMEOUT s, default 90), else stops it and fails.
#           --port defaults to a free port; the port is written to DIR/port,
#           the PID to DIR/kafka.pid, and "PID PORT" is printed on stdout.
#           --set KEY=VALUE (repeatable) adds a broker property after the
#           defaults below, so it wins (a later line replaces an earlier one).
#           The defaults suit one broker for tests and the bench: internal
#           topics with replication factor and min ISR 1 and few partitions,
#           no initial rebalance delay, group session timeouts down to 1 s,
#           small log segments (1 MiB, the broker's minimum).
#   stop    SIGTERM to the PID in DIR/kafka.pid (checked to be this broker's
#           java), waits up to 30 s, then SIGKILL. Never stops by name.
#   status  prints "running PID PORT" (exit 0) or "stopped" (exit 1).
#
# Facts it follows: /work/shared/ENGINES.md (Kafka 4.4.0, Java 17).
set -eu
VERSION=${KAFKA_VERSION:-4.4.0}
LOG4J_VERSION=2.25.5
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${KAFKA_CACHE:-$ROOT/.cache/kafka-$VERSION}
JAVA=${JAVA:-java}
TIMEOUT=${KAFKA_START_TIMEOUT:-90}

usage() { echo "usage: $0 start|stop|status --dir DIR [--port P] [--controller-port C] [--set KEY=VALUE]..." >&2; exit 2; }
[ $# -ge 1 ] || usage
cmd=$1; shift
DIR=""; PORT=""; CPORT=""
EXTRA=""   # --set lines, one property a line
NL='
'
while [ $# -ge 2 ]; do
  case $1 in
    --dir) DIR=$2 ;;
    --port) PORT=$2 ;;
    --controller-port) CPORT=$2 ;;
    --set)
      case $2 in
        *=*) ;;
        *) usage ;;
      esac
      case $2 in
        *"$NL"*) usage ;;   # one property, one line
      esac
      EXTRA="$EXTRA$2$NL" ;;
    *) usage ;;
  esac
  shift 2
done
[ $# -eq 0 ] && [ -n "$DIR" ] || usage
# one spelling of DIR, so that the PID check below matches the command line
[ "$cmd" = start ] && mkdir -p "$DIR"
[ -d "$DIR" ] && DIR=$(cd "$DIR" && pwd)

. "$ROOT/scripts/lib/jvm_service.sh"

# the jars of this version, fetched once
fetch_jars() {
  jvm_fetch_jars kafka.sh "$CACHE" '    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>'"$VERSION"'</version></dependency>
    <!-- without an slf4j binding the broker logs nothing, and "started" is never seen -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>'"$LOG4J_VERSION"'</version></dependency>'
}

# this node's PID if it is alive; empty otherwise
live_pid() { jvm_live_pid "$DIR/kafka.pid" "kafka.Kafka $DIR/server.properties"; }

stop() { jvm_stop kafka.sh "$DIR/kafka.pid" "kafka.Kafka $DIR/server.properties"; }

start() {
  if [ -n "$(live_pid)" ]; then echo "kafka.sh: already running ($(live_pid))" >&2; return 1; fi
  command -v "$JAVA" >/dev/null || { echo "kafka.sh: no java (scripts/install-deps.sh)" >&2; return 1; }
  fetch_jars
  [ -n "$PORT" ] && [ "$PORT" != 0 ] || PORT=$(free_port)   # 0: any free port
  # a restart on the same DIR keeps the controller's port (the quorum's address)
  [ -n "$CPORT" ] || CPORT=$(cat "$DIR/controller_port" 2>/dev/null || true)
  [ -n "$CPORT" ] || CPORT=$(free_port)
  echo "$CPORT" >"$DIR/controller_port"
  cat >"$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DIR/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
offsets.topic.segment.bytes=1048576
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
transaction.state.log.segment.bytes=1048576
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
log.segment.bytes=1048576
auto.create.topics.enable=true
PROPS
  printf '%s' "$EXTRA" >>"$DIR/server.properties"
  cat >"$DIR/log4j2.properties" <<'L4J'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
L4J
  echo "$PORT" >"$DIR/port"
  cp="$CACHE/libs/*"
  if [ ! -f "$DIR/data/meta.properties" ]; then
    id=$("$JAVA" -cp "$cp" kafka.tools.StorageTool random-uuid | tail -1)
    "$JAVA" -cp "$cp" kafka.tools.StorageTool format -t "$id" -c "$DIR/server.properties" >"$DIR/format.log" 2>&1 || {
      echo "kafka.sh: format failed (see $DIR/format.log)" >&2; return 1; }
  fi
  : >"$DIR/kafka.log"
  setsid nohup "$JAVA" -Xms512m -Xmx512m -XX:+UseG1GC -Dlog4j2.configurationFile="$DIR/log4j2.properties" \
    -cp "$cp" kafka.Kafka "$DIR/server.properties" >>"$DIR/kafka.log" 2>&1 </dev/null &
  echo $! >"$DIR/kafka.pid"
  i=0
  while [ $i -lt $((TIMEOUT * 10)) ]; do
    if jvm_gone "$(cat "$DIR/kafka.pid")"; then echo "kafka.sh: broker exited (see $DIR/kafka.log)" >&2; rm -f "$DIR/kafka.pid"; return 1; fi
    if grep -q "Kafka Server started" "$DIR/kafka.log" &&
       python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',int(sys.argv[1])),1)" "$PORT" 2>/dev/null; then
      echo "kafka.sh: ready on 127.0.0.1:$PORT (pid $(cat "$DIR/kafka.pid"), data $DIR/data)" >&2
      echo "$(cat "$DIR/kafka.pid") $PORT"
      return 0
    fi
    sleep 0.1
    i=$((i + 1))
  done
  echo "kafka.sh: not ready in $TIMEOUT s (see $DIR/kafka.log); stopping it" >&2
  stop
  return 1
}

case $cmd in
  start) start ;;
  stop) stop ;;
  status)
    pid=$(live_pid)
    if [ -n "$pid" ]; then echo "running $pid $(cat "$DIR/port" 2>/dev/null)"; else echo "stopped"; exit 1; fi
    ;;
  *) usage ;;
esac
