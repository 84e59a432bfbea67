#!/bin/sh
# Installs what the browser client needs to build and to be tested:
# Node.js >= 20 with npm (the build: esbuild, TypeScript, buf and
# protoc-gen-es, all from web/package-lock.json) and Debian's chromium
# (the browser tests drive it with playwright-core). Debian 12's own
# nodejs is 18, too old: a newer Node.js already on the PATH (e.g. from
# nodesource) is used as it is; without one, Debian's nodejs + npm are
# installed and the build says the version is too old.
# Idempotent: prints nothing and changes nothing when all are present.
set -e
missing=""
dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "ok installed" || missing="$missing chromium"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
[ -z "$missing" ] && exit 0
echo "install-web-deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 $missing >/dev/null
