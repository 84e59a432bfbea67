/* test_storage.c -- the store refuses to destroy data.
 *
 * - A store with its CURRENT file missing does not open: the server refuses
 *   to start and says why, twice in a row, and every file of the store is
 *   still there (RocksDB used to write a new CURRENT over it on the first
 *   start and delete the SST files as obsolete on the second); with CURRENT
 *   back, every acknowledged message is there.
 * - A non-empty directory that holds no store is refused, by serve and by
 *   init; `parley init` creates a store in an empty one.
 * - A torn last record of the write-ahead log (what a crash leaves) recovers
 *   without a flag; damage in the middle of the log refuses the start (it
 *   used to be dropped silently), and --recover-truncate-corrupt-wal starts
 *   anyway and logs what was dropped.
 * - Under --min-free-disk (a 2 GiB file is allocated next to the store to
 *   make the free space cross it) sends get INSUFFICIENT_STORAGE, /healthz
 *   says "disk full" with 503, /metrics counts the refusals, acknowledged
 *   messages stay readable, a restart on the full disk comes up (still
 *   refusing writes); when the file goes, writes resume by themselves and
 *   the recipient gets exactly what was acknowledged. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../check.h"
#include "harness.h"

enum { WAIT_MS = 20000, REFUSE_WAIT_MS = 20000 };

#define NEED(x) CHECK((x), "%s", #x)

static const char *bin(void) {
    const char *b = getenv("PARLEY_BIN");
    return b && *b ? b : "./build/parley";
}

/* Runs `parley args...` with stdout and stderr appended to log. Returns the
 * exit status (0..255), or -2 if it was still running after timeout_ms (it
 * is killed then: a server that should have refused to start), -1 if it
 * could not run. */
static int run_parley(const char *const *args, const char *log, int timeout_ms) {
    char *argv[32];
    int a = 0;
    argv[a++] = (char *)bin();
    for (int i = 0; args[i] && a < 31; i++) argv[a++] = (char *)args[i];
    argv[a] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    for (uint64_t until = h_now_ms() + (uint64_t)timeout_ms; h_now_ms() < until; h_sleep_ms(20))
        if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -2;
}

/* Starts `parley serve` on data (a free port) and expects it to refuse:
 * the exit status, or -2 if it kept running. */
static int serve_expecting_refusal(const char *data, const char *log, const char *extra) {
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", h_free_port());
    const char *args[] = {"serve", "--listen", listen, "--data", data, extra, NULL};
    return run_parley(args, log, REFUSE_WAIT_MS);
}

static int file_has(const char *path, const char *text) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, text) != NULL;
}

static int exists(const char *dir, const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0;
}

/* the files of dir ending in suffix, with sizes, as "name:size\n" lines */
static size_t list_files(const char *dir, const char *suffix, char *out, size_t cap) {
    out[0] = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t n = 0, used = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name), sl = strlen(suffix);
        if (len < sl || strcmp(e->d_name + len - sl, suffix) != 0) continue;
        char p[512];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &st) != 0) continue;
        int w = snprintf(out + used, cap - used, "%s:%lld\n", e->d_name, (long long)st.st_size);
        if (w > 0 && (size_t)w < cap - used) used += (size_t)w;
        n++;
    }
    closedir(d);
    return n;
}

/* the newest write-ahead log of dir (highest number), into path */
static int newest_wal(const char *dir, char *path, size_t cap) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    long best = -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".log") != 0) continue;
        long num = strtol(e->d_name, NULL, 10);
        if (num > best) {
            best = num;
            snprintf(path, cap, "%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
    return best >= 0 ? 0 : -1;
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* a user pair, their direct conversation and n acknowledged messages */
typedef struct scene {
    h_dev *a, *b;
    uint64_t conv;
    h_sent exp[256];
    size_t n;
} scene;

static int scene_make(h_server *s, scene *sc, int n_msgs) {
    sc->a = h_user_new(s, NULL);
    sc->b = h_user_new(s, NULL);
    if (!sc->a || !sc->b) return -1;
    if (pc_open_direct(sc->a->c, sc->b->id.user_id, &sc->conv) != 0) return -1;
    if (h_accept(sc->b, sc->conv) != 0) return -1;   /* past the message-request bound */
    char text[64];
    for (int i = 0; i < n_msgs; i++) {
        snprintf(text, sizeof text, "stored %d", i);
        if (h_send_rec(sc->a, sc->conv, text, sc->exp, &sc->n) != 0) return -1;
    }
    return 0;
}

/* how many of the acknowledged messages exp[0..n) are in conv's history
 * (same seq and text); -1 if history fails */
static long in_history(h_dev *d, uint64_t conv, const h_sent *exp, size_t n) {
    size_t nh = 0;
    h_event *hist = h_history_all(d, conv, &nh);
    if (!hist) return -1;
    long found = 0;
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < nh; i++)
            if (hist[i].seq == exp[k].seq && h_event_body_is(&hist[i], exp[k].text)) {
                found++;
                break;
            }
    h_events_free(hist, nh);
    return found;
}

/* ------------------------------------------------------------- cases */

static void missing_current_is_refused_and_nothing_is_deleted(void) {
    static h_server S;
    static scene sc;
    const char *flags[] = {"--send-rate", "100000", NULL};
    NEED(h_server_start(&S, flags) == 0);
    NEED(scene_make(&S, &sc, 20) == 0);
    h_dev_disconnect(sc.a);
    h_dev_disconnect(sc.b);
    NEED(h_server_stop(&S) == 0);
    /* a second run recovers the log into table files, so there are some */
    NEED(h_server_restart(&S) == 0);
    NEED(h_server_stop(&S) == 0);
    static char before[8192], after[8192];
    size_t n_sst = list_files(S.data, ".sst", before, sizeof before);
    CHECK(n_sst > 0, "no .sst files in %s to protect", S.data);

    char current[512], saved[512];
    snprintf(current, sizeof current, "%s/CURRENT", S.data);
    snprintf(saved, sizeof saved, "%s/CURRENT.saved", S.dir);
    NEED(rename(current, saved) == 0);
    for (int attempt = 1; attempt <= 2; attempt++) {
        int rc = serve_expecting_refusal(S.data, S.log, NULL);
        CHECK(rc > 0, "start %d with CURRENT missing: %s", attempt,
              rc == -2 ? "the server started" : "no refusal");
        CHECK(!exists(S.data, "CURRENT"), "start %d wrote a new CURRENT", attempt);
        list_files(S.data, ".sst", after, sizeof after);
        CHECK(strcmp(before, after) == 0, "start %d changed the table files:\nbefore:\n%safter:\n%s",
              attempt, before, after);
    }
    CHECK(file_has(S.log, "does not open") && file_has(S.log, "CURRENT"),
          "the log does not say why the store was refused");

    /* the files were all kept: with CURRENT restored, everything is there */
    NEED(rename(saved, current) == 0);
    CHECK(h_server_restart(&S) == 0, "restart with CURRENT restored");
    NEED(h_dev_reconnect(&S, sc.a, 0) == 0);
    long found = in_history(sc.a, sc.conv, sc.exp, sc.n);
    CHECK(found == (long)sc.n, "%ld of %zu acknowledged messages in history", found, sc.n);
    h_server_destroy(&S);
}

static char foreign_dir[64];

static void remove_foreign_dir(void) {
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", foreign_dir);
    if (foreign_dir[0] && !getenv("PARLEY_KEEP_DATA") && system(cmd) != 0)
        fprintf(stderr, "  cannot remove %s\n", foreign_dir);
}

static void foreign_directory_is_refused_and_init_creates(void) {
    char *dir = foreign_dir;
    snprintf(foreign_dir, sizeof foreign_dir, "/tmp/parley-foreign-XXXXXX");
    NEED(mkdtemp(foreign_dir));
    atexit(remove_foreign_dir);   /* also when a CHECK returns early */
    char data[128], stray[160], log[128], empty[128];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(stray, sizeof stray, "%s/notes.txt", data);
    snprintf(log, sizeof log, "%s/out.log", dir);
    snprintf(empty, sizeof empty, "%s/empty", dir);
    NEED(mkdir(data, 0700) == 0);
    FILE *f = fopen(stray, "w");
    NEED(f);
    fputs("not a store\n", f);
    fclose(f);

    int rc = serve_expecting_refusal(data, log, NULL);
    CHECK(rc > 0, "serve on a directory with foreign files: %s", rc == -2 ? "started" : "?");
    CHECK(file_has(log, "holds no parley store"), "serve does not say why");
    const char *init_foreign[] = {"init", "--data", data, NULL};
    rc = run_parley(init_foreign, log, WAIT_MS);
    CHECK(rc == 1, "init on a non-empty directory exited %d", rc);
    CHECK(!exists(data, "CURRENT") && !exists(data, "PARLEY_STORE") && exists(data, "notes.txt"),
          "the foreign directory was changed");

    NEED(mkdir(empty, 0700) == 0);
    const char *init_empty[] = {"init", "--data", empty, NULL};
    rc = run_parley(init_empty, log, WAIT_MS);
    CHECK(rc == 0, "init on an empty directory exited %d", rc);
    CHECK(exists(empty, "CURRENT") && exists(empty, "PARLEY_STORE"), "init made no store");
    /* and init refuses to run twice */
    rc = run_parley(init_empty, log, WAIT_MS);
    CHECK(rc == 1, "a second init on the store exited %d", rc);
}

static void torn_wal_tail_recovers_without_a_flag(void) {
    static h_server S;
    static scene sc;
    const char *flags[] = {"--send-rate", "100000", NULL};
    NEED(h_server_start(&S, flags) == 0);
    NEED(scene_make(&S, &sc, 30) == 0);
    h_server_kill9(&S);
    char wal[512];
    NEED(newest_wal(S.data, wal, sizeof wal) == 0);
    long size = file_size(wal);
    CHECK(size > 64, "write-ahead log %s has %ld bytes", wal, size);
    /* a write cut short: the last record loses its last bytes */
    NEED(truncate(wal, size - 5) == 0);
    CHECK(h_server_restart(&S) == 0, "no start after a torn last record");
    NEED(h_dev_reconnect(&S, sc.a, 0) == 0);
    /* the torn record is the last write; everything before it is there */
    long found = in_history(sc.a, sc.conv, sc.exp, sc.n - 1);
    CHECK(found == (long)sc.n - 1, "%ld of the first %zu acknowledged messages in history", found,
          sc.n - 1);
    h_server_destroy(&S);
}

static void corrupt_wal_middle_is_refused_unless_told_to_drop(void) {
    static h_server S;
    static scene sc;
    const char *flags[] = {"--send-rate", "100000", NULL};
    NEED(h_server_start(&S, flags) == 0);
    NEED(scene_make(&S, &sc, 200) == 0);
    h_server_kill9(&S);
    char wal[512];
    NEED(newest_wal(S.data, wal, sizeof wal) == 0);
    long size = file_size(wal);
    CHECK(size > 20000, "write-ahead log %s has only %ld bytes", wal, size);
    int fd = open(wal, O_WRONLY);
    NEED(fd >= 0);
    unsigned char junk[64];
    memset(junk, 0xa5, sizeof junk);
    CHECK(pwrite(fd, junk, sizeof junk, size * 2 / 5) == (ssize_t)sizeof junk, "pwrite");
    close(fd);

    int rc = serve_expecting_refusal(S.data, S.log, NULL);
    CHECK(rc > 0, "start on a log damaged in the middle: %s",
          rc == -2 ? "the server started (the damage was dropped silently)" : "?");
    CHECK(file_has(S.log, "write-ahead log is damaged") &&
          file_has(S.log, "--recover-truncate-corrupt-wal"),
          "the refusal does not say what is wrong and what the flag does");

    /* the operator accepts the loss */
    NEED(S.n_extra + 1 < H_MAX_EXTRA_ARGS);
    S.extra[S.n_extra++] = strdup("--recover-truncate-corrupt-wal");
    CHECK(h_server_restart(&S) == 0, "no start with --recover-truncate-corrupt-wal");
    CHECK(file_has(S.log, "recovered to sequence number"), "the log does not say what was kept");
    NEED(h_dev_reconnect(&S, sc.a, 0) == 0);
    long found = in_history(sc.a, sc.conv, sc.exp, sc.n);
    fprintf(stderr, "  %ld of %zu acknowledged messages kept before the damage\n", found, sc.n);
    CHECK(found > 0 && found < (long)sc.n, "%ld of %zu messages after truncating at the damage",
          found, sc.n);
    h_server_destroy(&S);
}

static int health_is(const h_server *s, int want_status, const char *want_body) {
    int st = 0;
    char body[128];
    return h_http_get(s->port, "/healthz", &st, body, sizeof body) == 0 && st == want_status &&
           strncmp(body, want_body, strlen(want_body)) == 0;
}

static int wait_health(const h_server *s, int want_status, const char *want_body) {
    for (uint64_t until = h_now_ms() + WAIT_MS; h_now_ms() < until; h_sleep_ms(50))
        if (health_is(s, want_status, want_body)) return 1;
    return 0;
}

static void full_disk_refuses_writes_and_they_resume(void) {
    static h_server S;
    static scene sc;
    /* the watermark sits 1 GiB under today's free space; a 2 GiB file
     * next to the store takes the free space under it (other programs'
     * writes in between move it by far less) */
    struct statvfs v;
    NEED(statvfs("/tmp", &v) == 0);
    unsigned long long free_now = (unsigned long long)v.f_bavail * v.f_frsize;
    CHECK(free_now > (3ull << 30), "only %llu bytes free in /tmp", free_now);
    char watermark[32];
    snprintf(watermark, sizeof watermark, "%llu", free_now - (1ull << 30));
    const char *flags[] = {"--send-rate", "100000", "--min-free-disk", watermark, NULL};
    NEED(h_server_start(&S, flags) == 0);
    NEED(scene_make(&S, &sc, 5) == 0);
    NEED(h_dev_sync(sc.b, WAIT_MS) == 0);

    char filler[400];
    snprintf(filler, sizeof filler, "%s/filler", S.dir);
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    NEED(fd >= 0);
    int fa = posix_fallocate(fd, 0, 2ll << 30);
    close(fd);
    CHECK(fa == 0, "posix_fallocate: %s", strerror(fa));
    CHECK(wait_health(&S, 503, "disk full"), "/healthz did not say disk full");
    double full = 0;
    CHECK(h_metric(&S, "parley_store_disk_full", &full) == 0 && full == 1, "disk_full %.0f", full);

    uint64_t seq = 1;
    CHECK(pc_send_text(sc.a->c, sc.conv, "refused", &seq) != 0, "a send was accepted on a full disk");
    CHECK(pc_status(sc.a->c) == PARLEY__V1__STATUS__INSUFFICIENT_STORAGE, "status %d (%s)",
          pc_status(sc.a->c), pc_error(sc.a->c));
    double refused = 0;
    CHECK(h_metric(&S, "parley_store_writes_refused_total", &refused) == 0 && refused >= 1,
          "writes_refused_total %.0f", refused);
    long found = in_history(sc.a, sc.conv, sc.exp, sc.n);
    CHECK(found == (long)sc.n, "%ld of %zu acknowledged messages readable on a full disk", found, sc.n);
    NEED(h_server_alive(&S));

    /* a restart on the full disk comes up (it used to abort again), still
     * refusing writes and serving what is stored */
    CHECK(h_server_stop(&S) == 0, "the server did not stop cleanly on a full disk");
    CHECK(h_server_restart_unhealthy(&S) == 0, "no restart on a full disk");
    CHECK(wait_health(&S, 503, "disk full"), "/healthz after the restart on a full disk");
    NEED(h_dev_reconnect(&S, sc.a, 0) == 0);
    found = in_history(sc.a, sc.conv, sc.exp, sc.n);
    CHECK(found == (long)sc.n, "%ld of %zu acknowledged messages after the restart", found, sc.n);
    CHECK(pc_send_text(sc.a->c, sc.conv, "refused again", &seq) != 0 &&
              pc_status(sc.a->c) == PARLEY__V1__STATUS__INSUFFICIENT_STORAGE,
          "a send after the restart on a full disk: status %d", pc_status(sc.a->c));
    uint64_t cursor = 0;
    for (size_t i = 0; i < sc.b->n_ev; i++)
        if (sc.b->ev[i].user_seq > cursor) cursor = sc.b->ev[i].user_seq;
    NEED(h_dev_reconnect(&S, sc.b, cursor) == 0);
    NEED(h_dev_sync(sc.b, WAIT_MS) == 0);

    NEED(unlink(filler) == 0);
    CHECK(wait_health(&S, 200, "ok"), "/healthz did not come back to ok");
    CHECK(h_send_rec(sc.a, sc.conv, "after space returned", sc.exp, &sc.n) == 0,
          "send after space returned: %s", pc_error(sc.a->c));
    h_count_goal g = {&sc.b, 1, sc.conv, sc.n, 1};
    CHECK(h_pump(&sc.b, 1, h_pred_count, &g, WAIT_MS), "b has %zu of %zu events",
          h_dev_count(sc.b, sc.conv), sc.n);
    char why[256];
    CHECK(h_expect_exact(sc.b, sc.conv, sc.exp, sc.n, why, sizeof why) == 0, "%s", why);
    h_server_destroy(&S);
}

int main(void) {
    RUN(missing_current_is_refused_and_nothing_is_deleted);
    RUN(foreign_directory_is_refused_and_init_creates);
    RUN(torn_wal_tail_recovers_without_a_flag);
    RUN(corrupt_wal_middle_is_refused_unless_told_to_drop);
    RUN(full_disk_refuses_writes_and_they_resume);
    CHECK_EXIT();
}
