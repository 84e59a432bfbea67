#!/bin/sh
# Installs what `make bench` needs beyond scripts/install-deps.sh: the peer
# brokers it compares parley with (mosquitto, nats-server; Redis comes from
# install-deps.sh, the tests need it; Apache Kafka
# runs from jars that scripts/kafka.sh fetches with Maven, on a Java 17
# runtime), their C client libraries (librdkafka, which the cluster's log
# also uses, comes with install-deps.sh), gnuplot, valgrind for
# scripts/callgrind.sh, and curl and jq for scripts/bench_cassandra.sh.
# Kept apart from install-deps.sh so that building and testing parley never
# needs them. Idempotent: prints nothing and changes nothing when all are present.
set -e
PACKAGES="mosquitto libmosquitto-dev nats-server libnats-dev
  openjdk-17-jre-headless maven gnuplot-nox valgrind curl jq"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-bench-deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
# the packages start system-wide daemons; the bench starts its own on free
# ports, so stop the default ones to leave the cores to the run
for s in mosquitto redis-server nats-server; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$s" 2>/dev/null; then
    $SUDO systemctl stop "$s" >/dev/null 2>&1 || true
  fi
done
