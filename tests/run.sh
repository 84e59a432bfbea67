#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it:
#   1. release build (gcc): unit and integration tests (the integration tests
#      start the real server; failure tests kill -9 and restart it)
#   2. ASan + UBSan build (gcc): the same tests again; any sanitizer report
#      from the server or the tests fails the run
#   3. clang build with libFuzzer (the fuzz targets only): every fuzz target
#      for FUZZ_SECONDS each
# In 1 and 2, after the C tests, tests/mqtt/test_*.py: standard MQTT clients
# (mosquitto-clients, paho-mqtt) against that build's server.
# Between 1 and 2, the browser client (web/): npm build, its TypeScript unit
# tests (test_web_unit) and headless Chromium end to end (test_web_e2e,
# and Web Push: test_web_push).
# Engine tests (an integration test whose source calls cassandra_node_start,
# kafka_node_start or redis_cluster_start) run once, in pass 2 (in pass 1
# with SKIP_SANITIZE=1; pass 1 lists them as run there): the server code
# they exercise is the same in both builds, and ASan checks it.
# Shared engines: one Cassandra node (for 1b, the engine tests and the
# drills) and one Redis Cluster (for the engine tests and drills), started in the background before the
# release build and stopped by PID at exit (trap, whatever happens). An
# engine test gets PARLEY_TEST_CASSANDRA / PARLEY_TEST_REDIS_CLUSTER unless
# its source names cassandra_node_freeze/_restart/_pid (redis_cluster_kill/
# _restart/_pid): a test that stops or signals its engine starts its own.
# A program on a shared engine leaves it as it found it (its keyspaces
# dropped, FLUSHALL: tests/integration/cassandra_node.h, redis_cluster_node.h).
# Kafka is not shared. Programs run one at a time.
# Each test program prints PASS/FAIL lines and a closing line
# "CASES n passed m failed" (tests/check.h); a program that ran no case,
# printed no CASES line (crashed, timed out, exited early) or whose binary is
# missing (every tests/unit/test_*.c, tests/integration/test_*.c and
# tests/fuzz/fuzz_*.c is expected to have one) fails. NOTE lines (bounds a
# build did not check, and the like) are always shown. Each program's line
# ends with its wall seconds, each build says its seconds, and before the
# total come the wall seconds of each stage with the load average (the
# machine may be shared). The last line is the total.
#   1b. the same release build, a chosen set of integration tests once more
#      with every server on Cassandra (PARLEY_TEST_STORE=cassandra) on the
#      shared node; each server gets its own keyspace (tests/integration/
#      harness.h). Labelled cass:NAME and counted like the others; the tests
#      that are about RocksDB itself are listed with the reason they are not
#      run.
#   1c. scripts/cluster.sh on the real engines (tests/cluster/
#      test_cluster_script.sh, release build), then the failure drills on
#      three nodes (tests/integration/test_drill_*.c, release build; not in
#      passes 1 and 2; on the shared engines by the same rule as the engine
#      tests): SKIP without Java, Maven or redis-server.
# Environment: FUZZ_SECONDS (default 20), SKIP_SANITIZE=1, SKIP_FUZZ=1,
# SKIP_CASSANDRA=1 (no pass 1b; the engine tests still run),
# ONLY=GLOB (run only the programs whose name matches, e.g. ONLY='test_ws'
# or ONLY='fuzz_*'; a missing program is still reported, within the glob;
# only the engines the picked programs share are started).
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=$(nproc)
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
ONLY=${ONLY:-*}
passed=0
failed=0
failed_names=()

# per-stage wall seconds: note() closes the stage before it; the list is
# printed before the total
stage_name=""
stage_t0=$SECONDS
stage_times=()
stage_end() {
    [ -n "$stage_name" ] && stage_times+=("$(printf '%6d s  %s' $((SECONDS - stage_t0)) "$stage_name")")
    stage_name=""
}
note() { stage_end; stage_name=$*; stage_t0=$SECONDS; printf '\n== %s\n' "$*"; }

# A background job writes its exit status to a file, and its waiter reads
# that: `wait PID` cannot be trusted minutes later (bash forgets a finished
# child once its PID is reused, "not a child of this shell"; pid_max is
# 32768 on a busy machine). The PID is only signalled while the file is
# missing (the job still runs, so the PID is still its own).
bg_wait_rc() { # rc file, bound in seconds: the status written there, or 124 past the bound
    local t0=$SECONDS
    while [ ! -s "$1" ]; do
        [ $((SECONDS - t0)) -lt "$2" ] || return 124
        sleep 1
    done
    return "$(cat "$1")"
}

build() { # dir, extra cmake args... (build_targets: only these targets, else all)
    local dir=$1 t0=$SECONDS rc; shift
    cmake -S . -B "$dir" "$@" >/dev/null || return 1
    # shellcheck disable=SC2086 # build_targets is a list of names on purpose
    cmake --build "$dir" -j "$JOBS" ${build_targets:+--target $build_targets} 2>&1 |
        grep -E "error|warning|Error" ; rc=${PIPESTATUS[0]}
    echo "  built $dir in $((SECONDS - t0)) s"
    return "$rc"
}

# A build in the background while tests run (they mostly wait on servers and
# engines; the build is CPU): in its own session, so that the EXIT trap stops
# all of it by its PID; build_wait prints what build() would have and
# returns its status.
export JOBS
export -f build
bg_dir=$(mktemp -d /tmp/parley-bg-build-XXXXXX)
declare -A bg_pids=()
build_bg() { # dir, extra cmake args... (build_targets as for build)
    local dir=$1
    build_targets="${build_targets:-}" setsid bash -c 'build "$@"; echo $? >"$0.rc"' "$bg_dir/$dir" "$@" \
        >"$bg_dir/$dir.out" 2>&1 &
    bg_pids[$dir]=$!
}
build_wait() { # dir, extra cmake args...: the background build, or a build now if none was started
    local dir=$1 rc
    [ -n "${bg_pids[$dir]:-}" ] || { build "$@"; return; }
    bg_wait_rc "$bg_dir/$dir.rc" 7200
    rc=$?
    [ "$rc" = 124 ] && echo "  the build of $dir did not end in 7200 s"
    unset "bg_pids[$dir]"
    sed 's/built \(.*\) in/built \1 (in the background) in/' "$bg_dir/$dir.out"
    return "$rc"
}
bg_builds_stop() {
    local p
    for p in "${!bg_pids[@]}"; do
        [ -s "$bg_dir/$p.rc" ] || kill -- "-${bg_pids[$p]}" 2>/dev/null
    done
    rm -rf "$bg_dir"
}

# run one test program; count its PASS/FAIL lines and check its CASES line
run_program() { # label, program, env...
    local label=$1 prog=$2; shift 2
    local out rc p f cases cp=0 cf=0 why="" t0=$SECONDS
    out=$(env "$@" timeout "${program_timeout:-300}" "$prog" 2>&1)
    rc=$?
    program_seconds=$((SECONDS - t0))
    p=$(grep -c '^PASS ' <<<"$out")
    f=$(grep -c '^FAIL ' <<<"$out")
    cases=$(grep -E '^CASES [0-9]+ passed [0-9]+ failed$' <<<"$out" | tail -n 1)
    if [ -n "$cases" ]; then
        read -r _ cp _ cf _ <<<"$cases"
    fi
    if [ -z "$cases" ]; then
        why="no CASES line: crashed, timed out or returned before CHECK_EXIT (exit $rc)"
    elif [ $((cp + cf)) -eq 0 ]; then
        why="ran no case"
    elif [ "$cp" -ne "$p" ] || [ "$cf" -gt "$f" ]; then
        why="CASES line ($cp passed, $cf failed) disagrees with its $p PASS and $f FAIL lines"
    elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        why="exit status $rc with no FAIL line"
    fi
    if [ -n "$why" ] && [ "$f" -eq 0 ]; then f=1; fi
    if [ "$f" -ne 0 ]; then
        printf '%s\n' "$out" | sed 's/^/    /'
        failed_names+=("$label")
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    printf '  %-40s %3d passed, %d failed%s (%d s)\n' "$label" "$p" "$f" "${why:+ ($why)}" "$program_seconds"
    if [ "$f" -eq 0 ]; then   # on failure the whole output is above already
        grep '^NOTE ' <<<"$out" | sed "s/^NOTE /    NOTE $label: /"
    fi
}

# a test whose source exists but whose program was not built
missing_program() { # label
    printf '  %-40s %3d passed, 1 failed (no program: not built)\n' "$1" 0
    failed=$((failed + 1))
    failed_names+=("$1")
}

# --- the engines the programs of a run share: one Cassandra node (pass 1b
# and the engine tests) and one Redis Cluster (the engine tests), started
# in the background at the beginning (while the build runs), handed over
# as PARLEY_TEST_CASSANDRA / PARLEY_TEST_REDIS_CLUSTER and stopped by the
# PIDs their scripts recorded at exit, whatever happens (trap).
shared_dir=""
shared_cass_start="" shared_redis_start=""   # PIDs of the background starts
shared_cass_rc="" shared_redis_rc=""
shared_cassandra="" shared_redis=""           # the addresses, once up

shared_engines_stop() {
    [ -n "$shared_dir" ] || return 0
    [ -n "$shared_cass_start" ] && [ ! -s "$shared_dir/cassandra-start.rc" ] && kill "$shared_cass_start" 2>/dev/null
    [ -n "$shared_redis_start" ] && [ ! -s "$shared_dir/redis-start.rc" ] && kill "$shared_redis_start" 2>/dev/null
    [ -d "$shared_dir/cassandra" ] && scripts/cassandra.sh stop --dir "$shared_dir/cassandra" >/dev/null 2>&1
    [ -d "$shared_dir/redis" ] && scripts/redis-cluster.sh stop --dir "$shared_dir/redis" >/dev/null 2>&1
    rm -rf "$shared_dir"
    shared_dir=""
}
trap 'shared_engines_stop; bg_builds_stop' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

shared_engines_start() { # cassandra(0/1) redis(0/1)
    shared_dir=$(mktemp -d /tmp/parley-shared-XXXXXX)
    if [ "$1" = 1 ]; then
        # a generous bound: it starts while the build runs on a loaded machine
        {
            CASSANDRA_START_TIMEOUT=${CASSANDRA_START_TIMEOUT:-300} \
                scripts/cassandra.sh start --dir "$shared_dir/cassandra" >"$shared_dir/cassandra-start.log" 2>&1
            echo $? >"$shared_dir/cassandra-start.rc"
        } &
        shared_cass_start=$!
    fi
    if [ "$2" = 1 ] && command -v redis-server >/dev/null; then
        {
            scripts/redis-cluster.sh start --dir "$shared_dir/redis" >"$shared_dir/redis-start.log" 2>&1
            echo $? >"$shared_dir/redis-start.rc"
        } &
        shared_redis_start=$!
    fi
}

# waits for the background start of the shared Cassandra node; 0 when it
# is up (shared_cassandra is its address), else its log and 1 (once)
shared_cassandra_up() {
    if [ -n "$shared_cass_start" ]; then
        bg_wait_rc "$shared_dir/cassandra-start.rc" $((${CASSANDRA_START_TIMEOUT:-300} + 120))
        shared_cass_rc=$?
        shared_cass_start=""
        if [ "$shared_cass_rc" != 0 ]; then
            # the engine, not the code under test: one more try, in the open
            { cat "$shared_dir/cassandra-start.log"; tail -n 20 "$shared_dir/cassandra/cassandra.log"; } 2>/dev/null |
                sed 's/^/    NOTE shared cassandra start failed, once more: /'
            scripts/cassandra.sh stop --dir "$shared_dir/cassandra" >/dev/null 2>&1   # whatever it left
            rm -rf "$shared_dir/cassandra"
            CASSANDRA_START_TIMEOUT=${CASSANDRA_START_TIMEOUT:-300} \
                scripts/cassandra.sh start --dir "$shared_dir/cassandra" >"$shared_dir/cassandra-start.log" 2>&1
            shared_cass_rc=$?
        fi
        if [ "$shared_cass_rc" = 0 ]; then
            shared_cassandra="127.0.0.1:$(cat "$shared_dir/cassandra/port")"
        else
            { cat "$shared_dir/cassandra-start.log"; tail -n 20 "$shared_dir/cassandra/cassandra.log"; } 2>/dev/null |
                sed 's/^/    /'
            fail_stage "shared cassandra start (Java 17 and Maven are needed: scripts/install-deps.sh)"
        fi
    fi
    [ -n "$shared_cassandra" ]
}
shared_redis_up() {
    if [ -n "$shared_redis_start" ]; then
        bg_wait_rc "$shared_dir/redis-start.rc" 300
        shared_redis_rc=$?
        shared_redis_start=""
        if [ "$shared_redis_rc" = 0 ]; then
            shared_redis=$(sed 's/^/127.0.0.1:/' "$shared_dir/redis/ports" | paste -sd, -)
        else
            sed 's/^/    /' "$shared_dir/redis-start.log" | tail -n 20
            fail_stage "shared redis cluster start (redis-server: scripts/install-deps.sh)"
        fi
    fi
    [ -n "$shared_redis" ]
}

# A program "starts an engine" when its source calls cassandra_node_start,
# kafka_node_start or redis_cluster_start (tests/integration/*_node.h).
# Such a program runs once per run, in the pass of the build in
# engines_here (the ASan one; the release one with SKIP_SANITIZE=1): the
# server code it exercises is the same in both builds, and ASan checks it.
starts_engine() { grep -qE '\b(cassandra_node_start|kafka_node_start|redis_cluster_start)\b' "$1"; }

# The shared engines for one program, as VAR=VALUE words: only to a program
# that does not stop, freeze, restart or signal its engine (a source that
# names cassandra_node_freeze/_restart/_pid, or redis_cluster_kill/_restart/
# _pid, gets its own; on a shared engine those calls fail). Kafka is not
# shared: the topic and group names of a chat node are fixed.
shares_cassandra() { grep -qE '\bcassandra_node_start\b' "$1" && ! grep -qE '\bcassandra_node_(freeze|restart|pid)\b' "$1"; }
shares_redis() { grep -qE '\bredis_cluster_start\b' "$1" && ! grep -qE '\bredis_cluster_(kill|restart|pid)\b' "$1"; }
engine_env=()
shared_engine_env() { # source; sets engine_env
    engine_env=()
    if shares_cassandra "$1" && shared_cassandra_up; then
        engine_env+=("PARLEY_TEST_CASSANDRA=$shared_cassandra")
    fi
    if shares_redis "$1" && shared_redis_up; then
        engine_env+=("PARLEY_TEST_REDIS_CLUSTER=$shared_redis")
    fi
}

# every program whose source is tests/unit/test_*.c or tests/integration/test_*.c
run_suite() { # build dir, label prefix, env...
    local dir=$1 tag=$2; shift 2
    local src kind name
    for src in tests/unit/test_*.c tests/integration/test_*.c; do
        [ -e "$src" ] || continue
        kind=$(basename "$(dirname "$src")")
        name=$(basename "$src" .c)
        # shellcheck disable=SC2053 # ONLY is a glob on purpose
        [[ $name == $ONLY ]] || continue
        case $name in test_drill_*) continue ;; esac   # on three nodes: stage 1c
        if starts_engine "$src" && [ "$engines_here" != "$dir" ]; then
            printf '  %-40s runs in the %s pass only (starts a real engine)\n' "$tag$name" \
                "$([ "$engines_here" = build ] && echo release || echo ASan)"
            continue
        fi
        if [ -x "$dir/tests/$kind/$name" ]; then
            engine_env=()
            if starts_engine "$src"; then
                # a JVM of its own under ASan on a loaded machine has been seen near 300 s
                shared_engine_env "$src"
                program_timeout=600 run_program "$tag$name" "$dir/tests/$kind/$name" PARLEY_BIN="$dir/parley" "$@" \
                    "${engine_env[@]}"
            else
                run_program "$tag$name" "$dir/tests/$kind/$name" PARLEY_BIN="$dir/parley" "$@"
            fi
        else
            missing_program "$tag$name"
        fi
    done
}

fail_stage() { failed=$((failed + 1)); failed_names+=("$1"); }

# standard MQTT clients against the server of a build (tests/mqtt/test_*.py:
# mosquitto_sub/_pub/_rr, paho-mqtt; Debian's python3, packages from
# scripts/install-deps.sh)
run_mqtt_clients() { # build dir, label prefix, env...
    local dir=$1 tag=$2; shift 2
    local src name
    for src in tests/mqtt/test_*.py; do
        [ -e "$src" ] || continue
        name=$(basename "$src" .py)
        # shellcheck disable=SC2053 # ONLY is a glob on purpose
        [[ $name == $ONLY ]] || continue
        run_program "${tag}mqtt:$name" "$src" PARLEY_BIN="$dir/parley" PARLEY_CLI="$dir/parley-cli" "$@"
    done
}

# 1b: the server's integration tests on Cassandra
# messaging, sync and receipts (test_messaging, test_realtime), groups
# (test_group, test_membership), keys and device messages (test_keys),
# consent, retention (test_retention), kill -9 (test_crash), partitions,
# MQTT (test_mqtt: its requests' History and list reads are made off the
# worker there, and answered through MQTT's limits)
cassandra_tests="test_messaging test_realtime test_group test_membership test_keys test_consent
                 test_retention test_crash test_partitions test_mqtt"

# the pass that runs the engine tests, and the shared engines it (and pass
# 1b) will want, started now so that they come up while the build runs
engines_here=build-asan
[ "${SKIP_SANITIZE:-0}" = 1 ] && engines_here=build
want_cass=0 want_redis=0
if [ "${SKIP_CASSANDRA:-0}" != 1 ]; then
    for name in $cassandra_tests; do
        # shellcheck disable=SC2053 # ONLY is a glob on purpose
        [[ $name == $ONLY ]] && want_cass=1
    done
fi
for src in tests/integration/test_*.c; do
    name=$(basename "$src" .c)
    # shellcheck disable=SC2053 # ONLY is a glob on purpose
    [[ $name == $ONLY ]] || continue
    shares_cassandra "$src" && want_cass=1
    shares_redis "$src" && want_redis=1
done
if [ "$want_cass" = 1 ] || [ "$want_redis" = 1 ]; then
    shared_engines_start "$want_cass" "$want_redis"
fi

# the builds of passes 2 and 3, each in the background while the tests of
# the pass before it run (one build at a time)
asan_args=(-DCMAKE_BUILD_TYPE=Debug -DPARLEY_SANITIZE=ON)
fuzz_args=(-DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DPARLEY_FUZZ=ON)
# the fuzz targets the run picked: only they are built in build-fuzz (the
# tests there would be a third build of every program, never run)
fuzz_targets=""
for src in tests/fuzz/fuzz_*.c; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .c)
    # shellcheck disable=SC2053 # ONLY is a glob on purpose
    [[ $name == $ONLY ]] && fuzz_targets="$fuzz_targets $name"
done
fuzz_targets=${fuzz_targets# }
fuzz_build_bg() {
    [ "${SKIP_FUZZ:-0}" != 1 ] && [ -n "$fuzz_targets" ] || return 0
    build_targets=$fuzz_targets build_bg build-fuzz "${fuzz_args[@]}"
}

note "release build"
release_built=0
build build -DCMAKE_BUILD_TYPE=RelWithDebInfo && release_built=1
if [ "${SKIP_SANITIZE:-0}" != 1 ]; then
    build_bg build-asan "${asan_args[@]}"
else
    fuzz_build_bg
fi
if [ "$release_built" = 1 ]; then
    run_suite build ""
    run_mqtt_clients build ""
else
    fail_stage "release build"
fi

# the e2e vectors, re-derived independently in Python (tests/vectors/check.sh)
case check_vectors in $ONLY)
    note "e2e test vectors in Python"
    # a Python without the cryptography package (and no PyPI to get it)
    # is a failure, not a skip: the vectors would go unchecked
    run_program "check_vectors" tests/vectors/check.sh
    ;;
esac

# the browser client: built with npm (scripts/build-web.sh), its TypeScript
# unit tests, then headless Chromium against the release server
# (tests/web/); chromium missing is a failure, never a skip
# shellcheck disable=SC2053 # ONLY is a glob on purpose
if [[ test_web_unit == $ONLY || test_web_e2e == $ONLY || test_web_push == $ONLY ]]; then
    note "browser client (web/)"
    if ./scripts/install-web-deps.sh && ./scripts/build-web.sh; then
        [[ test_web_unit == $ONLY ]] && run_program test_web_unit tests/web/unit.sh
        [[ test_web_e2e == $ONLY ]] && run_program test_web_e2e tests/web/e2e.sh \
            PARLEY_BIN="$ROOT/build/parley" PARLEY_CLI="$ROOT/build/parley-cli" \
            PARLEY_WEB_TEST_OUT="$ROOT/build/web-test-output"
        [[ test_web_push == $ONLY ]] && run_program test_web_push tests/web/push.sh \
            PARLEY_BIN="$ROOT/build/parley" PARLEY_CLI="$ROOT/build/parley-cli"
    else
        fail_stage "web build"
    fi
fi

# --- 1b: the server's integration tests on Cassandra (cassandra_tests,
# listed at the top)
# not run on Cassandra, each for its reason (the tests that start their own
# Cassandra, test_cql and the like, run in pass 1)
cassandra_skipped=(
    "test_retention_restart: measures the bytes of the RocksDB files in --data"
    "test_powerloss: power loss under the RocksDB write-ahead log (its files in --data)"
    "test_storage: a RocksDB store with files missing or corrupt in --data"
    "test_store_migrate: export/import of a RocksDB store in --data (test_store_migrate_cassandra covers Cassandra)"
    "test_store_select: which backend --store selects and what it refuses, run without PARLEY_TEST_STORE"
)
cassandra_pass() {
    local name reason any=0
    for name in $cassandra_tests; do
        # shellcheck disable=SC2053 # ONLY is a glob on purpose
        [[ $name == $ONLY ]] && any=1
    done
    [ "$any" = 1 ] || return 0   # no node for a run that picked none
    # the shared node (started at the beginning), stopped by PID at exit
    shared_cassandra_up || return
    for name in $cassandra_tests; do
        # shellcheck disable=SC2053 # ONLY is a glob on purpose
        [[ $name == $ONLY ]] || continue
        if [ -x "build/tests/integration/$name" ]; then
            run_program "cass:$name" "build/tests/integration/$name" PARLEY_BIN=build/parley \
                PARLEY_TEST_STORE=cassandra PARLEY_TEST_CASSANDRA="$shared_cassandra"
        else
            missing_program "cass:$name"
        fi
    done
    for reason in "${cassandra_skipped[@]}"; do
        name=${reason%%:*}
        # shellcheck disable=SC2053
        [[ $name == $ONLY ]] || continue
        printf '  %-40s not run on Cassandra:%s\n' "cass:$name" "${reason#*:}"
    done
}
if [ "${SKIP_CASSANDRA:-0}" != 1 ] && [ -x build/parley ]; then
    note "release build, on Cassandra (PARLEY_TEST_STORE=cassandra)"
    cassandra_pass
fi

# --- 1c: scripts/cluster.sh on the real engines (tests/cluster/): its
# own Redis Cluster, Cassandra and parley nodes, stopped by PID. Needs Java,
# Maven and redis-server; without them (scripts/install-deps.sh installs
# them) a SKIP line, not a failure. Up to 15 minutes: the engines start
# slowly on a loaded machine.
# shellcheck disable=SC2053 # ONLY is a glob on purpose
if [[ test_cluster_script == $ONLY ]] && [ -x build/parley ]; then
    note "cluster (scripts/cluster.sh)"
    if command -v java >/dev/null && command -v mvn >/dev/null && command -v redis-server >/dev/null; then
        program_timeout=900 run_program test_cluster_script tests/cluster/test_cluster_script.sh \
            PARLEY_BIN="$ROOT/build/parley" PARLEY_CLI="$ROOT/build/parley-cli"
    else
        printf '  %-40s SKIP: no java, mvn or redis-server (scripts/install-deps.sh)\n' test_cluster_script
    fi
fi
# the failure drills of issue 13 on three nodes (each program starts its own
# Redis Cluster, Cassandra and nodes; up to 25 minutes on a loaded machine)
drill_note=""
for src in tests/integration/test_drill_*.c; do
    [ -e "$src" ] && [ -x build/parley ] || continue
    name=$(basename "$src" .c)
    # shellcheck disable=SC2053 # ONLY is a glob on purpose
    [[ $name == $ONLY ]] || continue
    [ -n "$drill_note" ] || { drill_note=1; note "failure drills on three nodes (release build)"; }
    if ! { command -v java >/dev/null && command -v mvn >/dev/null && command -v redis-server >/dev/null; }; then
        printf '  %-40s SKIP: no java, mvn or redis-server (scripts/install-deps.sh)\n' "$name"
    elif [ -x "build/tests/integration/$name" ]; then
        shared_engine_env "$src"   # a drill that kills only parley nodes shares the engines
        program_timeout=1500 run_program "$name" "build/tests/integration/$name" PARLEY_BIN="$ROOT/build/parley" \
            "${engine_env[@]}"
    else
        missing_program "$name"
    fi
done

if [ "${SKIP_SANITIZE:-0}" != 1 ]; then
    note "ASan + UBSan build"
    san_logs=$(mktemp -d /tmp/parley-san-XXXXXX)
    asan_built=0
    build_wait build-asan "${asan_args[@]}" && asan_built=1
    fuzz_build_bg
    if [ "$asan_built" = 1 ]; then
        run_suite build-asan "asan:" \
            ASAN_OPTIONS="log_path=$san_logs/asan:abort_on_error=1:detect_leaks=1" \
            UBSAN_OPTIONS="log_path=$san_logs/ubsan:halt_on_error=1:print_stacktrace=1"
        run_mqtt_clients build-asan "asan:" \
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

if [ "${SKIP_FUZZ:-0}" != 1 ] && [ -n "$fuzz_targets" ]; then
    note "fuzzing (${FUZZ_SECONDS}s per target, clang + libFuzzer + ASan/UBSan)"
    if build_targets=$fuzz_targets build_wait build-fuzz "${fuzz_args[@]}"; then
        for src in tests/fuzz/fuzz_*.c; do
            [ -e "$src" ] || continue
            name=$(basename "$src" .c)
            # shellcheck disable=SC2053 # ONLY is a glob on purpose
            [[ $name == $ONLY ]] || continue
            if [ ! -x "build-fuzz/tests/fuzz/$name" ]; then
                missing_program "fuzz:$name"
                continue
            fi
            corpus="build-fuzz/corpus-$name"
            mkdir -p "$corpus"
            seeds="$ROOT/tests/fuzz/seeds/$name"
            seed_note=""
            [ -d "$seeds" ] || seed_note="    NOTE fuzz:$name: no seed corpus in tests/fuzz/seeds/$name"
            # UBSan reports stop the target (they would only be printed otherwise)
            if out=$(cd build-fuzz && UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
                    "./tests/fuzz/$name" -max_total_time="$FUZZ_SECONDS" \
                    -print_final_stats=1 -rss_limit_mb=2048 "corpus-$name" \
                    $( [ -d "$seeds" ] && echo "$seeds" ) 2>&1); then
                runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' <<<"$out" | grep -o '[0-9]*$')
                if [ "${runs:-0}" -gt 0 ]; then
                    printf '  %-40s %3d passed, 0 failed (%s executions)\n' "fuzz:$name" 1 "$runs"
                    passed=$((passed + 1))
                else
                    printf '%s\n' "$out" | tail -n 40 | sed 's/^/    /'
                    printf '  %-40s %3d passed, 1 failed (no input executed)\n' "fuzz:$name" 0
                    fail_stage "fuzz:$name"
                fi
            else
                printf '%s\n' "$out" | tail -n 40 | sed 's/^/    /'
                printf '  %-40s %3d passed, 1 failed\n' "fuzz:$name" 0
                fail_stage "fuzz:$name"
            fi
            [ -n "$seed_note" ] && printf '%s\n' "$seed_note"
        done
    else
        fail_stage "fuzz build (clang)"
    fi
fi

stage_end
echo
echo "stage wall times (total $SECONDS s, load average $(cut -d' ' -f1-3 /proc/loadavg)):"
printf '%s\n' "${stage_times[@]}"
echo
[ "$failed" -ne 0 ] && printf 'failed: %s\n' "${failed_names[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
