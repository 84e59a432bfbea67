#!/bin/sh
# tests/web/e2e.mjs (the browser client in headless Chromium) for tests/run.sh.
exec node "$(dirname "$0")/e2e.mjs"
