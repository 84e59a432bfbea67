#!/bin/sh
# The unit tests of the browser client's TypeScript (web/test/*.test.ts:
# the sign-in proof, backoff, sync dedupe, ticks) under node's test runner,
# reported in tests/check.h's format (PASS/FAIL per test, a CASES line) so
# tests/run.sh counts them. Needs web/node_modules (scripts/build-web.sh).
set -u
cd "$(dirname "$0")/../../web" || exit 1
if ! out=$(node build.mjs --unit 2>&1); then
  printf '%s\nFAIL build_unit_tests\nCASES 0 passed 1 failed\n' "$out"
  exit 1
fi
out=$(node --test --test-reporter=tap dist-test/ 2>&1)
rc=$?
# top-level results only (subtests are indented)
printf '%s\n' "$out" | sed -n -e 's/^ok [0-9]* - \(.*\)$/PASS \1/p' -e 's/^not ok [0-9]* - \(.*\)$/FAIL \1/p'
p=$(printf '%s\n' "$out" | grep -c '^ok ')
f=$(printf '%s\n' "$out" | grep -c '^not ok ')
[ "$f" -ne 0 ] && printf '%s\n' "$out" | grep -v '^ok ' | head -n 80 | sed 's/^/  /'
echo "CASES $p passed $f failed"
[ "$rc" -eq 0 ] && [ "$f" -eq 0 ] && [ "$p" -gt 0 ]
