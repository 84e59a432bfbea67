#!/bin/sh
# Installs the Debian packages parley needs to build, test and run, then
# fetches the release build of RocksDB that parley links
# (scripts/rocksdb-release.sh: Debian's runs its debug assertions).
# Idempotent: prints nothing and changes nothing when all are present.
set -e
PACKAGES="build-essential cmake pkg-config clang libclang-rt-14-dev
  librocksdb-dev librdkafka-dev libprotobuf-c-dev protobuf-c-compiler libsodium-dev libssl-dev
  openssl libcurl4-openssl-dev python3-cryptography openjdk-17-jre-headless maven redis-server redis-tools
  libhiredis-dev
  libmosquitto-dev mosquitto-clients python3-paho-mqtt python3-protobuf protobuf-compiler python3-nacl"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "install-deps: installing$missing"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
"$(dirname "$0")/rocksdb-release.sh"
