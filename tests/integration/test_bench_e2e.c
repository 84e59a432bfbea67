/* test_bench_e2e.c -- parley-bench --e2e cannot print a figure that its
 * crypto did not earn: a small fixed run (--messages) decrypts every
 * delivery (deliveries == acks x receivers, zero decrypt errors, a body on
 * the wire larger than the plaintext), and a run whose sender corrupts
 * some ciphertexts (the hidden --e2e-tamper-every) counts each of them as
 * a decrypt error, reports "valid": false and exits 3.
 *
 * parley-bench starts its own server (PARLEY_BIN) on a free loopback port
 * and stops it; the test stops parley-bench by PID on every path. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"
#include "harness.h"

static char SERVER[512], BENCH[512], DIR_[64];

/* Runs parley-bench with args (NULL-terminated) and --json into json;
 * returns its exit status, or -1 if it did not end within 240 s (then it
 * is stopped: SIGTERM, which makes it kill its server, then SIGKILL). */
static int run_bench(const char *json, const char *const *args) {
    char log[128];
    snprintf(log, sizeof log, "%s/bench.log", DIR_);
    const char *all[H_SPAWN_ARGS_MAX + 1];
    int n = 0;
    for (int i = 0; args[i] && n < H_SPAWN_ARGS_MAX - 5; i++) all[n++] = args[i];
    all[n++] = "--parley";
    all[n++] = SERVER;
    all[n++] = "--quiet";
    all[n++] = "--json";
    all[n++] = json;
    all[n] = NULL;
    pid_t pid = h_spawn_logged(BENCH, all, log);
    if (pid < 0) return -1;
    int status = 0;
    for (int i = 0; i < 2400; i++) {   /* 240 s in 100 ms steps */
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (r < 0 && errno != EINTR) return -1;
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) return -1;
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* The report's JSON file, NUL-terminated (bounded), or NULL. */
static char *read_json(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return n ? buf : NULL;
}

/* "key": NUMBER, or -1 when absent. */
static double json_num(const char *js, const char *key) {
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(js, pat);
    if (!p) return -1;
    return strtod(p + strlen(pat), NULL);
}

/* "key": "value" present exactly. */
static int json_str_is(const char *js, const char *key, const char *value) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\": \"%s\"", key, value);
    return strstr(js, pat) != NULL;
}

static void bench_direct_e2e_decrypts_every_delivery(void) {
    char json[128];
    snprintf(json, sizeof json, "%s/direct.json", DIR_);
    const char *args[] = {"direct", "--e2e", "--pairs", "3", "--rate", "max", "--messages", "200",
                          "--seconds", "120", NULL};
    int rc = run_bench(json, args);
    CHECK(rc == 0, "parley-bench exited %d (log in %s)", rc, DIR_);
    const char *js = read_json(json);
    CHECK(js, "no JSON report");
    CHECK(json_str_is(js, "e2e", "on"), "report does not say e2e on");
    CHECK(json_num(js, "decrypt_errors") == 0, "decrypt_errors %g", json_num(js, "decrypt_errors"));
    CHECK(json_num(js, "acked_total") == 200, "acked_total %g", json_num(js, "acked_total"));
    CHECK(json_num(js, "delivered_total") == 200, "delivered_total %g", json_num(js, "delivered_total"));
    CHECK(json_str_is(js, "valid", "true"), "run not valid");
    /* a Sender Keys message: 9-byte header, AEAD (body + 16), signature (64) */
    CHECK(json_num(js, "wire_body_bytes") == 32 + 9 + 16 + 64, "wire_body_bytes %g",
          json_num(js, "wire_body_bytes"));
}

static void bench_group_e2e_decrypts_every_delivery(void) {
    char json[128];
    snprintf(json, sizeof json, "%s/group.json", DIR_);
    /* 5 members, all sending: each member holds 4 receiving states */
    const char *args[] = {"group", "--e2e", "--size", "5", "--rate", "max", "--window", "1",
                          "--messages", "100", "--seconds", "120", NULL};
    int rc = run_bench(json, args);
    CHECK(rc == 0, "parley-bench exited %d (log in %s)", rc, DIR_);
    const char *js = read_json(json);
    CHECK(js, "no JSON report");
    CHECK(json_num(js, "decrypt_errors") == 0, "decrypt_errors %g", json_num(js, "decrypt_errors"));
    CHECK(json_num(js, "acked_total") == 100, "acked_total %g", json_num(js, "acked_total"));
    CHECK(json_num(js, "delivered_total") == 400, "delivered_total %g", json_num(js, "delivered_total"));
    CHECK(json_str_is(js, "valid", "true"), "run not valid");
}

static void bench_e2e_corrupted_ciphertext_invalidates_run(void) {
    char json[128];
    snprintf(json, sizeof json, "%s/tamper.json", DIR_);
    /* one loop: sends 0, 10, ..., 190 are corrupted, 20 of 200 */
    const char *args[] = {"direct", "--e2e", "--e2e-tamper-every", "10", "--pairs", "2", "--rate", "max",
                          "--messages", "200", "--seconds", "120", NULL};
    int rc = run_bench(json, args);
    CHECK(rc == 3, "parley-bench exited %d, want 3 (invalid run)", rc);
    const char *js = read_json(json);
    CHECK(js, "no JSON report");
    CHECK(json_num(js, "decrypt_errors") == 20, "decrypt_errors %g", json_num(js, "decrypt_errors"));
    CHECK(json_num(js, "acked_total") == 200, "acked_total %g", json_num(js, "acked_total"));
    CHECK(json_num(js, "delivered_total") == 180, "delivered_total %g", json_num(js, "delivered_total"));
    CHECK(json_str_is(js, "valid", "false"), "a run with undecryptable deliveries is valid");
}

int main(void) {
    const char *bin = getenv("PARLEY_BIN");
    snprintf(SERVER, sizeof SERVER, "%s", bin && *bin ? bin : "./build/parley");
    snprintf(BENCH, sizeof BENCH, "%s", SERVER);
    char *slash = strrchr(BENCH, '/');
    snprintf(slash ? slash + 1 : BENCH, sizeof BENCH - (size_t)(slash ? slash + 1 - BENCH : 0), "parley-bench");
    if (access(BENCH, X_OK) != 0) {
        printf("FAIL bench_binary: %s not executable\n", BENCH);
        return 1;
    }
    snprintf(DIR_, sizeof DIR_, "/tmp/parley-bench-e2e-XXXXXX");
    if (!mkdtemp(DIR_)) {
        printf("FAIL tempdir\n");
        return 1;
    }
    RUN(bench_direct_e2e_decrypts_every_delivery);
    RUN(bench_group_e2e_decrypts_every_delivery);
    RUN(bench_e2e_corrupted_ciphertext_invalidates_run);
    if (check_failures_total == 0) {
        char path[128];
        const char *files[] = {"direct.json", "group.json", "tamper.json", "bench.log"};
        for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
            snprintf(path, sizeof path, "%s/%s", DIR_, files[i]);
            unlink(path);
        }
        rmdir(DIR_);
    }
    CHECK_EXIT();
}
