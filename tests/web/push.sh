#!/bin/sh
# tests/web/push.mjs (Web Push in the browser client, headless Chromium) for tests/run.sh.
exec node "$(dirname "$0")/push.mjs"
