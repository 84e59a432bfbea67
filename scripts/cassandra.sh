#!/bin/sh
# scripts/cassandra.sh start|stop|status|fetch --dir DIR [--port P]
#
# One Apache Cassandra node on 127.0.0.1 for development and tests; its
# cassandra.yaml, data, log and PID file all in DIR. The jars come from
# Maven Central through a throwaway pom (`mvn dependency:copy-dependencies`)
# into $CASSANDRA_CACHE (default .cache/cassandra-VERSION, ignored by git),
# once; later starts reuse them.
#
#   start   writes DIR/cassandra.yaml and starts the node on Java 17; waits
#           until it is ready ("Startup complete" logged and the CQL port
#           open, at most CASSANDRA_START_TIMEOUT s, default 120), else stops
#           it and fails. --port (CQL) defaults to a free port; the port is
#           written to DIR/port. The heap is CASSANDRA_HEAP (default 512M).
#   stop    SIGTERM to the PID in DIR/cassandra.pid (checked to be this
#           node's java), waits up to 30 s, then SIGKILL. Never by name.
#   status  prints "running PID PORT" (exit 0) or "stopped" (exit 1).
#   fetch   only fetches the jars (no --dir needed).
#
# Facts it follows: /work/shared/ENGINES.md (Cassandra 5.0.9, Java 17).
set -eu
VERSION=${CASSANDRA_VERSION:-5.0.9}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${CASSANDRA_CACHE:-$ROOT/.cache/cassandra-$VERSION}
JAVA=${JAVA:-java}
TIMEOUT=${CASSANDRA_START_TIMEOUT:-120}
HEAP=${CASSANDRA_HEAP:-512M}

usage() { echo "usage: $0 start|stop|status|fetch --dir DIR [--port P]" >&2; exit 2; }
[ $# -ge 1 ] || usage
cmd=$1; shift
DIR=""; PORT=""
while [ $# -ge 2 ]; do
  case $1 in
    --dir) DIR=$2 ;;
    --port) PORT=$2 ;;
    *) usage ;;
  esac
  shift 2
done
[ $# -eq 0 ] || usage
[ "$cmd" = fetch ] || [ -n "$DIR" ] || usage
# one spelling of DIR, so that the PID check below matches the command line
[ "$cmd" = start ] && mkdir -p "$DIR"
[ -n "$DIR" ] && [ -d "$DIR" ] && DIR=$(cd "$DIR" && pwd)

. "$ROOT/scripts/lib/jvm_service.sh"

# the jars of this version, fetched once
fetch_jars() {
  jvm_fetch_jars cassandra.sh "$CACHE" '    <dependency><groupId>org.apache.cassandra</groupId><artifactId>cassandra-all</artifactId><version>'"$VERSION"'</version></dependency>'
}

# this node's PID if it is alive; empty otherwise
live_pid() { jvm_live_pid "$DIR/cassandra.pid" "-Dcassandra.config=file://$DIR/cassandra.yaml"; }

stop() { jvm_stop cassandra.sh "$DIR/cassandra.pid" "-Dcassandra.config=file://$DIR/cassandra.yaml"; }

write_yaml() {
  cat >"$DIR/cassandra.yaml" <<YAML
cluster_name: parley-dev
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $SPORT
ssl_storage_port: $SSLPORT
native_transport_port: $PORT
start_native_transport: true
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$SPORT"
endpoint_snitch: SimpleSnitch
data_file_directories:
  - $DIR/data
commitlog_directory: $DIR/commitlog
hints_directory: $DIR/hints
saved_caches_directory: $DIR/saved_caches
cdc_raw_directory: $DIR/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 8MiB
auto_snapshot: false
# parley commits each group commit as one LOGGED BATCH of at most 1 MiB
# (src/store/store_cassandra_write.c); the default fail threshold is 50 KiB
batch_size_warn_threshold: 2MiB
batch_size_fail_threshold: 4MiB
concurrent_compactors: 1
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
key_cache_size: 8MiB
counter_cache_size: 0MiB
prepared_statements_cache_size: 8MiB
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
YAML
}

start() {
  if [ -n "$(live_pid)" ]; then echo "cassandra.sh: already running ($(live_pid))" >&2; return 1; fi
  command -v "$JAVA" >/dev/null || { echo "cassandra.sh: no java (scripts/install-deps.sh)" >&2; return 1; }
  fetch_jars
  [ -n "$PORT" ] && [ "$PORT" != 0 ] || PORT=$(free_port)   # 0: any free port
  SPORT=$(free_port)
  SSLPORT=$(free_port)
  write_yaml
  echo "$PORT" >"$DIR/port"
  jamm=$(ls "$CACHE"/libs/jamm-*.jar | head -1)
  : >"$DIR/cassandra.log"
  # the JVM options of the 5.0 distribution's jvm-server.options and
  # jvm17-server.options (GC, JPMS exports/opens, netty), with a small heap
  setsid nohup "$JAVA" -Xms"$HEAP" -Xmx"$HEAP" -Xss256k \
    -XX:+UseThreadPriorities -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$DIR" \
    -XX:StringTableSize=1000003 -XX:+PerfDisableSharedMem -XX:+UseTLAB -XX:+ResizeTLAB \
    -Djava.net.preferIPv4Stack=true -Djdk.nio.maxCachedBufferSize=1048576 \
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m \
    -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70 \
    -Djdk.attach.allowAttachSelf=true \
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED \
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED \
    --add-exports java.sql/java.sql=ALL-UNNAMED \
    --add-exports java.base/java.lang.ref=ALL-UNNAMED \
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED \
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED \
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED \
    --add-opens java.base/java.lang.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED \
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED \
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED \
    --add-opens java.base/java.io=ALL-UNNAMED \
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED \
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED \
    --add-opens java.base/java.lang=ALL-UNNAMED \
    --add-opens java.base/java.util=ALL-UNNAMED \
    -Dio.netty.tryReflectionSetAccessible=true -Dio.netty.allocator.useCacheForAllThreads=true \
    -Dio.netty.allocator.maxOrder=11 \
    -javaagent:"$jamm" \
    -Dcassandra.config=file://"$DIR"/cassandra.yaml -Dcassandra-foreground=yes \
    -Dcassandra.storagedir="$DIR" -Dcassandra.logdir="$DIR" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=1000 \
    -cp "$CACHE/libs/*" org.apache.cassandra.service.CassandraDaemon >>"$DIR/cassandra.log" 2>&1 </dev/null &
  echo $! >"$DIR/cassandra.pid"
  i=0
  while [ $i -lt $((TIMEOUT * 10)) ]; do
    if jvm_gone "$(cat "$DIR/cassandra.pid")"; then echo "cassandra.sh: node exited (see $DIR/cassandra.log)" >&2; rm -f "$DIR/cassandra.pid"; return 1; fi
    if grep -q "Startup complete" "$DIR/cassandra.log" &&
       python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',int(sys.argv[1])),1)" "$PORT" 2>/dev/null; then
      echo "cassandra.sh: ready on 127.0.0.1:$PORT (pid $(cat "$DIR/cassandra.pid"), data $DIR/data)" >&2
      return 0
    fi
    sleep 0.1
    i=$((i + 1))
  done
  echo "cassandra.sh: not ready in $TIMEOUT s (see $DIR/cassandra.log); stopping it" >&2
  stop
  return 1
}

case $cmd in
  fetch) fetch_jars ;;
  start) start ;;
  stop) stop ;;
  status)
    pid=$(live_pid)
    if [ -n "$pid" ]; then echo "running $pid $(cat "$DIR/port" 2>/dev/null)"; else echo "stopped"; exit 1; fi
    ;;
  *) usage ;;
esac
