#!/bin/sh
# Builds the browser client (web/) into web/dist: `npm ci` into
# web/node_modules when the lockfile changed since the last install (a
# stamp file), then `npm run build` (generate the protocol code from
# proto/parley.proto, type-check, bundle). Quiet unless something fails.
set -e
cd "$(dirname "$0")/../web"
need_major=20
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt "$need_major" ]; then
  echo "build-web: Node.js >= $need_major is needed (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ ! -f .npm-ci-stamp ] || [ package-lock.json -nt .npm-ci-stamp ] || [ ! -d node_modules ]; then
  if ! npm ci --no-audit --no-fund --loglevel=error >"$log" 2>&1; then cat "$log" >&2; exit 1; fi
  touch .npm-ci-stamp
fi
# a failed build leaves no dist/: nothing stale is served or tested
rm -rf dist
if ! npm run build >"$log" 2>&1; then cat "$log" >&2; exit 1; fi
