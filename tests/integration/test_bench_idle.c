/* test_bench_idle.c -- the parley-bench connections options that
 * scripts/bench_idle_cluster.sh depends on, against one real server:
 *
 *   --register-server: users are registered there, not on --server (the
 *     --server given is a dead port, so a registration that went there
 *     would fail);
 *   --identities: the users a run registered are written to the file and a
 *     later run signs every one of them in from it (nothing registered
 *     again), which it can only do with the right user, device and key;
 *   --hook: runs with PARLEY_BENCH_PHASE=base before any connection opens
 *     and =held while every connection is held (the server's
 *     parley_connections, read by the hook itself, is the count asked).
 *
 * The server is the harness's (stopped by PID at exit on every path);
 * parley-bench is run by fork/exec and stopped by PID if it overruns. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"
#include "harness.h"

enum { N_USERS = 30, RECORD_BYTES = 80 };

static char BENCH[512], DIR_[64];
static h_server S;

/* Runs parley-bench with args (NULL-terminated); its output goes to
 * DIR_/bench.log. Returns its exit status, or -1 if it did not end within
 * 120 s (then it is stopped by PID: SIGTERM, then SIGKILL). */
static int run_bench(const char *const *args) {
    char log[128];
    snprintf(log, sizeof log, "%s/bench.log", DIR_);
    pid_t pid = h_spawn_logged(BENCH, args, log);
    if (pid < 0) return -1;
    int status = 0;
    for (int i = 0; i < 1200; i++) {   /* 120 s in 100 ms steps */
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (r < 0 && errno != EINTR) return -1;
        h_sleep_ms(100);
    }
    kill(pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) return -1;
        h_sleep_ms(100);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* The whole (small) file, NUL-terminated, in a static buffer; NULL if none. */
static char *read_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

/* "key": NUMBER in a report, or -1 when absent. */
static double json_num(const char *js, const char *key) {
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(js, pat);
    return p ? strtod(p + strlen(pat), NULL) : -1;
}

static void path_in_dir(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", DIR_, name);
}

/* run 1: registration on --register-server only, users written to the file */
static void register_server_and_identities_written(void) {
    char json[128], ids[128], dead[64], n[16];
    path_in_dir(json, sizeof json, "register.json");
    path_in_dir(ids, sizeof ids, "identities.bin");
    snprintf(dead, sizeof dead, "ws://127.0.0.1:%d", h_free_port());   /* nothing listens there */
    snprintf(n, sizeof n, "%d", N_USERS);
    const char *args[] = {"connections", "--n", n, "--register-only", "--quiet", "--server", dead,
                          "--register-server", S.url, "--identities", ids, "--json", json, NULL};
    int rc = run_bench(args);
    CHECK(rc == 0, "parley-bench exited %d (log in %s)", rc, DIR_);
    const char *js = read_file(json);
    CHECK(js, "no JSON report");
    CHECK(json_num(js, "registered") == N_USERS, "registered %g, want %d", json_num(js, "registered"), N_USERS);
    CHECK(json_num(js, "registered_from_file") == 0, "registered_from_file %g, want 0",
          json_num(js, "registered_from_file"));
    struct stat st;
    CHECK(stat(ids, &st) == 0, "no identities file");
    CHECK(st.st_size == N_USERS * RECORD_BYTES, "identities file %lld bytes, want %d", (long long)st.st_size,
          N_USERS * RECORD_BYTES);
    CHECK((st.st_mode & 077) == 0, "identities file mode %o: readable by others", (unsigned)(st.st_mode & 0777));
}

/* run 2: every user signed in from the file, the hook at base and held */
static void identities_signed_in_again_and_hook_runs(void) {
    char json[128], ids[128], phases[128], hook[512], n[16];
    path_in_dir(json, sizeof json, "held.json");
    path_in_dir(ids, sizeof ids, "identities.bin");
    path_in_dir(phases, sizeof phases, "phases.txt");
    /* one line per phase: its name and the server's open connections then */
    snprintf(hook, sizeof hook,
             "echo \"$PARLEY_BENCH_PHASE $(curl -s --max-time 5 http://127.0.0.1:%d/metrics"
             " | awk '$1 == \"parley_connections\" {print $2}')\" >> '%s'",
             S.port, phases);
    snprintf(n, sizeof n, "%d", N_USERS);
    const char *args[] = {"connections", "--n", n, "--hold", "1", "--quiet", "--server", S.url,
                          "--identities", ids, "--hook", hook, "--json", json, NULL};
    int rc = run_bench(args);
    CHECK(rc == 0, "parley-bench exited %d (log in %s)", rc, DIR_);
    const char *js = read_file(json);
    CHECK(js, "no JSON report");
    CHECK(json_num(js, "registered_from_file") == N_USERS, "registered_from_file %g, want %d",
          json_num(js, "registered_from_file"), N_USERS);
    CHECK(json_num(js, "register_rate") < 0, "a run with every user in the file registered some");
    CHECK(json_num(js, "held") == N_USERS, "held %g, want %d (sign-in from the file failed?)",
          json_num(js, "held"), N_USERS);
    CHECK(json_num(js, "errors") == 0, "errors %g", json_num(js, "errors"));
    const char *ph = read_file(phases);
    CHECK(ph, "the hook never ran");
    char want[64];
    snprintf(want, sizeof want, "base 0\nheld %d\n", N_USERS);
    CHECK(strcmp(ph, want) == 0, "hook lines '%s', want '%s'", ph, want);
}

int main(void) {
    const char *bin = getenv("PARLEY_BIN");
    snprintf(BENCH, sizeof BENCH, "%s", bin && *bin ? bin : "./build/parley");
    char *slash = strrchr(BENCH, '/');
    snprintf(slash ? slash + 1 : BENCH, sizeof BENCH - (size_t)(slash ? slash + 1 - BENCH : 0), "parley-bench");
    if (access(BENCH, X_OK) != 0) {
        printf("FAIL bench_binary: %s not executable\n", BENCH);
        return 1;
    }
    if (system("curl --version >/dev/null 2>&1") != 0) {
        printf("SKIP test_bench_idle: no curl (the hook reads /metrics with it)\n");
        return 0;
    }
    snprintf(DIR_, sizeof DIR_, "/tmp/parley-bench-idle-XXXXXX");
    if (!mkdtemp(DIR_)) {
        printf("FAIL tempdir\n");
        return 1;
    }
    if (h_server_start(&S, NULL)) {
        printf("FAIL server_start\n");
        return 1;
    }
    RUN(register_server_and_identities_written);
    RUN(identities_signed_in_again_and_hook_runs);
    h_server_destroy(&S);
    if (check_failures_total == 0) {
        const char *files[] = {"register.json", "held.json", "identities.bin", "phases.txt", "bench.log"};
        for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
            char path[128];
            path_in_dir(path, sizeof path, files[i]);
            unlink(path);
        }
        rmdir(DIR_);
    }
    CHECK_EXIT();
}
