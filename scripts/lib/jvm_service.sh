# scripts/lib/jvm_service.sh -- what the scripts that run a JVM service on
# 127.0.0.1 share (cassandra.sh, kafka.sh): its jars from Maven Central
# through a throwaway pom, fetched once; its PID, checked against its own
# command line; stopping it by that PID, never by name. POSIX sh, sourced.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# jvm_fetch_jars WHO CACHE DEPENDENCIES: the runtime jars of DEPENDENCIES
# (<dependency> elements) into CACHE/libs, once (CACHE/libs/.complete says
# it is whole); mvn's output in CACHE/mvn.log
jvm_fetch_jars() {
  who=$1; cache=$2; deps=$3
  [ -f "$cache/libs/.complete" ] && return 0
  command -v mvn >/dev/null || { echo "$who: no mvn (scripts/install-deps.sh)" >&2; return 1; }
  mkdir -p "$cache"
  cat >"$cache/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>parley.dev</groupId>
  <artifactId>jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
$deps
  </dependencies>
</project>
POM
  rm -rf "$cache/libs.tmp"
  mvn -q -B -f "$cache/pom.xml" dependency:copy-dependencies -DoutputDirectory="$cache/libs.tmp" -DincludeScope=runtime >"$cache/mvn.log" 2>&1 || {
    echo "$who: mvn failed (see $cache/mvn.log)" >&2; return 1; }
  rm -rf "$cache/libs"
  mv "$cache/libs.tmp" "$cache/libs"
  touch "$cache/libs/.complete"
}

# jvm_live_pid PIDFILE PATTERN: the PID in PIDFILE if that process is alive
# (not a zombie: PID 1 reaps late here) and its command line contains
# PATTERN; empty otherwise
jvm_live_pid() {
  [ -f "$1" ] || return 0
  pid=$(cat "$1")
  case $pid in ''|*[!0-9]*) return 0 ;; esac
  st=$(ps -o stat= -p "$pid" 2>/dev/null || true)
  case $st in ''|Z*) return 0 ;; esac
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" && echo "$pid"
  return 0
}

# jvm_gone PID: true when PID has exited (or is a zombie). A start waits on
# this, not on jvm_live_pid: right after `setsid nohup java ... &` the PID
# may not have exec'd java yet, so its command line is not the JVM's (seen
# on a loaded machine: a node taken for dead, its PID file removed, and the
# JVM left running with nothing to stop it by)
jvm_gone() {
  st=$(ps -o stat= -p "$1" 2>/dev/null || true)
  case $st in ''|Z*) return 0 ;; esac
  return 1
}

# jvm_stop WHO PIDFILE PATTERN: SIGTERM to the live PID (after SIGCONT: a
# stopped JVM cannot act on SIGTERM), up to 30 s, then SIGKILL; the PID
# file goes
jvm_stop() {
  pid=$(jvm_live_pid "$2" "$3")
  if [ -n "$pid" ]; then
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    i=0
    while [ $i -lt 300 ] && [ -n "$(jvm_live_pid "$2" "$3")" ]; do sleep 0.1; i=$((i + 1)); done
    if [ -n "$(jvm_live_pid "$2" "$3")" ]; then
      echo "$1: $pid did not stop in 30 s; SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$2"
}
