#!/bin/sh
# scripts/rocksdb-release.sh -- RocksDB as its own project releases it,
# built with NDEBUG and -O2, for parley to link instead of Debian's.
#
# Why: Debian 12's librocksdb (7.8.3) is built without NDEBUG, so it runs
# RocksDB's debug assertions; after every memtable insert it re-checks the
# skip list at every level. Those checks cost the writers more than the
# inserts themselves: 296,000 -> 170,000 server instructions per delivered
# message (scripts/callgrind.sh --pairs 50, bench/RESULTS.md "A release
# RocksDB").
#
# Where from: RocksDB's Java release on Maven Central
# (org.rocksdb:rocksdbjni, classifier linux64) carries the whole library,
# its C API included, as one shared object (librocksdbjni-linux64.so;
# compression libraries linked in, needs only libstdc++). parley calls it
# through Debian's rocksdb/c.h (librocksdb-dev): every C function parley
# uses is declared alike in 7.8.3 and in this release (checked when the
# version was chosen; a function that went away fails the link).
#
# Fetched once into .cache/rocksdb-VERSION/ (ignored by git); prints
# nothing when it is there. CMake asks it for the path (`path`) and links it.
#   scripts/rocksdb-release.sh          fetch if missing
#   scripts/rocksdb-release.sh path     fetch if missing, print the path
set -eu
VERSION=10.10.1.1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=$ROOT/.cache/rocksdb-$VERSION
LIB=$CACHE/librocksdbjni-linux64.so

if [ ! -f "$LIB" ]; then
  . "$ROOT/scripts/lib/jvm_service.sh"
  echo "rocksdb-release: fetching org.rocksdb:rocksdbjni:$VERSION:linux64 from Maven Central" >&2
  jvm_fetch_jars rocksdb-release.sh "$CACHE" '    <dependency><groupId>org.rocksdb</groupId><artifactId>rocksdbjni</artifactId><version>'"$VERSION"'</version><classifier>linux64</classifier></dependency>'
  # the jar holds one library per architecture; x86-64's is linux64
  python3 - "$CACHE/libs/rocksdbjni-$VERSION-linux64.jar" "$LIB" <<'PY'
import sys, zipfile, os
jar, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(jar) as z:
    data = z.read("librocksdbjni-linux64.so")
tmp = out + ".tmp"
with open(tmp, "wb") as f:
    f.write(data)
os.chmod(tmp, 0o755)
os.rename(tmp, out)
PY
  rm -rf "$CACHE/libs"   # 29 MB of jar, no longer needed
fi
[ "${1:-}" = path ] && echo "$LIB"
exit 0
