#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it:
#   1. release build (gcc): unit and integration tests (the integration tests
#      start the real server; failure tests kill -9 and restart it)
#   2. ASan + UBSan build (gcc): the same tests again; any sanitizer report
#      from the server or the tests fails the run
#   3. clang build with libFuzzer: every fuzz target for FUZZ_SECONDS each
# Each test program prints PASS/FAIL lines; the last line is the total.
# Environment: FUZZ_SECONDS (default 20), SKIP_SANITIZE=1, SKIP_FUZZ=1.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=$(nproc)
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
passed=0
failed=0
failed_names=()

note() { printf '\n== %s\n' "$*"; }

build() { # dir, extra cmake args...
    local dir=$1; shift
    cmake -S . -B "$dir" "$@" >/dev/null || return 1
    cmake --build "$dir" -j "$JOBS" 2>&1 | grep -E "error|warning|Error" ; return "${PIPESTATUS[0]}"
}

# run one test program; count its PASS/FAIL lines
run_program() { # label, program, env...
    local label=$1 prog=$2; shift 2
    local out rc p f
    out=$(env "$@" timeout 300 "$prog" 2>&1)
    rc=$?
    p=$(grep -c '^PASS ' <<<"$out")
    f=$(grep -c '^FAIL ' <<<"$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crashed or timed out
    if [ "$f" -ne 0 ]; then
        printf '%s\n' "$out" | sed 's/^/    /'
        failed_names+=("$label")
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    printf '  %-40s %3d passed, %d failed\n' "$label" "$p" "$f"
}

run_suite() { # build dir, label prefix, env...
    local dir=$1 tag=$2; shift 2
    for t in "$dir"/tests/unit/test_* "$dir"/tests/integration/test_*; do
        [ -x "$t" ] || continue
        run_program "$tag$(basename "$t")" "$t" PARLEY_BIN="$dir/parley" "$@"
    done
}

fail_stage() { failed=$((failed + 1)); failed_names+=("$1"); }

note "release build"
if build build -DCMAKE_BUILD_TYPE=RelWithDebInfo; then
    run_suite build ""
else
    fail_stage "release build"
fi

if [ "${SKIP_SANITIZE:-0}" != 1 ]; then
    note "ASan + UBSan build"
    san_logs=$(mktemp -d /tmp/parley-san-XXXXXX)
    if build build-asan -DCMAKE_BUILD_TYPE=Debug -DPARLEY_SANITIZE=ON; then
        run_suite build-asan "asan:" \
            ASAN_OPTIONS="log_path=$san_logs/asan:abort_on_error=1:detect_leaks=1" \
            UBSAN_OPTIONS="log_path=$san_logs/ubsan:halt_on_error=1:print_stacktrace=1"
        reports=$(ls "$san_logs" 2>/dev/null | wc -l)
        if [ "$reports" -ne 0 ]; then
            echo "  sanitizer reports:"
            head -n 60 "$san_logs"/* | sed 's/^/    /'
            fail_stage "sanitizer reports ($reports)"
        else
            passed=$((passed + 1))
            echo "  no sanitizer reports                       1 passed, 0 failed"
        fi
    else
        fail_stage "sanitizer build"
    fi
    rm -rf "$san_logs"
fi

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
    note "fuzzing (${FUZZ_SECONDS}s per target, clang + libFuzzer + ASan/UBSan)"
    if build build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DPARLEY_FUZZ=ON; then
        for f in build-fuzz/tests/fuzz/fuzz_*; do
            [ -x "$f" ] || continue
            name=$(basename "$f")
            corpus="build-fuzz/corpus-$name"
            mkdir -p "$corpus"
            seeds="$ROOT/tests/fuzz/seeds/$name"
            if out=$(cd build-fuzz && "./tests/fuzz/$name" -max_total_time="$FUZZ_SECONDS" \
                    -print_final_stats=1 -rss_limit_mb=2048 "corpus-$name" \
                    $( [ -d "$seeds" ] && echo "$seeds" ) 2>&1); then
                runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' <<<"$out" | grep -o '[0-9]*$')
                printf '  %-40s %3d passed, 0 failed (%s executions)\n' "fuzz:$name" 1 "${runs:-?}"
                passed=$((passed + 1))
            else
                printf '%s\n' "$out" | tail -n 40 | sed 's/^/    /'
                printf '  %-40s %3d passed, 1 failed\n' "fuzz:$name" 0
                fail_stage "fuzz:$name"
            fi
        done
    else
        fail_stage "fuzz build (clang)"
    fi
fi

echo
[ "$failed" -ne 0 ] && printf 'failed: %s\n' "${failed_names[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
