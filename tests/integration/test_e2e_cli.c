/* test_e2e_cli.c -- two parley-cli users exchange end-to-end encrypted
 * messages (encrypted by default: send, sync, history) through the real server:
 *   - bob's sync prints alice's texts decrypted, in order, as the usual JSON
 *     lines; alice's sync prints bob's reply and her own texts, from her
 *     plaintext store; `history` shows the texts on both sides, decrypted,
 *     `history --plaintext` the server's bytes; the store file is 0600
 *   - a --plaintext sync still keeps the sender keys it acks
 *   - the key stores persist across runs (every command is a new process)
 *   - `verify` shows the same safety number on both sides; after `verify
 *     --mark`, a new device of bob makes alice's sync print an
 *     identity_changed warning until she marks again
 *   - no plaintext sent is anywhere under the server's directory (data and
 *     log), while a control message sent --plaintext is found there. */
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "../check.h"
#include "cli_runner.h"
#include "harness.h"

enum { MAX_ARGV = 16, CLI_TIMEOUT_MS = 60000, SCAN_FILE_MAX = 256 << 20 };

static h_server S;
static char CLI[600];

/* `parley-cli --state S.dir/e2e-WHO --server URL args...`, stdin /dev/null;
 * killed (by its pid) if it has not finished in CLI_TIMEOUT_MS. */
static void cli(cli_run *r, const char *who, const char *first, ...) {
    char state[400];
    snprintf(state, sizeof state, "%s/e2e-%s", S.dir, who);
    const char *argv[MAX_ARGV];
    int n = 0;
    argv[n++] = CLI;
    argv[n++] = "--state";
    argv[n++] = state;
    argv[n++] = "--server";
    argv[n++] = S.url;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < MAX_ARGV - 1; a = va_arg(ap, const char *)) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    cli_run_argv(r, argv, NULL, CLI_TIMEOUT_MS, first);
}

/* WHO's state file NAME */
static void state_file(char *buf, size_t cap, const char *who, const char *name) {
    snprintf(buf, cap, "%s/e2e-%s/%s", S.dir, who, name);
}

/* lines of type text */
static int count_text_lines(const char *out) {
    int n = 0;
    for (const char *p = out; (p = strstr(p, "\"type\":\"text\"")) != NULL; p++) n++;
    return n;
}

/* ------------------------------------------------------- plaintext scan */

static const char *scan_needle;
static int scan_hits;

static int scan_file(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)ftw;
    /* the CLIs' own state directories hold what the users sent and read */
    if (strstr(path, "/e2e-")) return 0;
    if (type != FTW_F || st->st_size <= 0 || st->st_size > SCAN_FILE_MAX) return 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    char *buf = malloc((size_t)st->st_size);
    ssize_t got = buf ? read(fd, buf, (size_t)st->st_size) : -1;
    close(fd);
    if (got > 0 && memmem(buf, (size_t)got, scan_needle, strlen(scan_needle))) scan_hits++;
    free(buf);
    return 0;
}

static int server_files_holding(const char *text) {
    scan_needle = text;
    scan_hits = 0;
    nftw(S.dir, scan_file, 16, FTW_PHYS);
    return scan_hits;
}

/* ------------------------------------------------------------------ case */

static void two_users_encrypted(void) {
    cli_run r;
    cli(&r, "alice", "register", "alice", NULL);
    uint64_t alice = cli_out_u64(&r);
    CHECK(r.status == 0 && alice, "register alice: %d %s", r.status, r.err);
    cli(&r, "bob", "register", "bob", NULL);
    uint64_t bob = cli_out_u64(&r);
    CHECK(r.status == 0 && bob, "register bob: %d %s", r.status, r.err);
    cli(&r, "alice", "direct", "bob", NULL);
    uint64_t conv = cli_out_u64(&r);
    CHECK(r.status == 0 && conv, "direct: %d %s", r.status, r.err);
    char cs[32];
    snprintf(cs, sizeof cs, "%" PRIu64, conv);
    cli(&r, "bob", "accept", cs, NULL);
    CHECK(r.status == 0, "bob accepts: %d %s", r.status, r.err);
    /* encrypted by default: register made and published bob's keys */
    cli(&r, "bob", "sync", NULL);
    CHECK(r.status == 0, "bob's first sync: %d %s", r.status, r.err);

    char s1[64], s2[64], s3[64], control[64];
    uint32_t tag = randombytes_random();
    snprintf(s1, sizeof s1, "cli-secret-one-%08x", tag);
    snprintf(s2, sizeof s2, "cli-secret-two-%08x", tag);
    snprintf(s3, sizeof s3, "cli-secret-reply-%08x", tag);
    snprintf(control, sizeof control, "cli-control-clear-%08x", tag);
    cli(&r, "alice", "send", cs, s1, NULL);
    uint64_t q1 = cli_out_u64(&r);
    CHECK(r.status == 0 && q1, "alice sends 1: %d %s", r.status, r.err);
    cli(&r, "alice", "send", cs, s2, NULL);
    uint64_t q2 = cli_out_u64(&r);
    CHECK(r.status == 0 && q2 == q1 + 1, "alice sends 2: %d %s", r.status, r.err);

    cli(&r, "bob", "sync", NULL);
    CHECK(r.status == 0, "bob sync: %d %s", r.status, r.err);
    char want1[128], want2[128];
    snprintf(want1, sizeof want1, "\"type\":\"text\",\"text\":\"%s\"", s1);
    snprintf(want2, sizeof want2, "\"type\":\"text\",\"text\":\"%s\"", s2);
    const char *l1 = strstr(r.out, want1), *l2 = strstr(r.out, want2);
    CHECK(l1 && l2 && l1 < l2, "bob's sync, want both texts decrypted in order:\n%s", r.out);
    CHECK(!strstr(r.out, "undecryptable"), "bob's sync has undecryptable lines:\n%s", r.out);

    cli(&r, "bob", "send", cs, s3, NULL);
    CHECK(r.status == 0 && cli_out_u64(&r), "bob replies: %d %s", r.status, r.err);
    cli(&r, "alice", "sync", NULL);
    CHECK(r.status == 0, "alice sync: %d %s", r.status, r.err);
    char want3[128];
    snprintf(want3, sizeof want3, "\"text\":\"%s\"", s3);
    CHECK(strstr(r.out, want3), "alice's sync lacks bob's reply:\n%s", r.out);
    /* her own messages: shown from her plaintext store (a sender cannot
     * decrypt its own sender-key messages) */
    CHECK(strstr(r.out, want1) && strstr(r.out, want2) && !strstr(r.out, "undecryptable"),
          "alice's own messages:\n%s", r.out);

    /* history: what the device read (bob) or sent (alice), decrypted; the
     * plaintext store is 0600; --plaintext shows the server's bytes */
    cli(&r, "bob", "history", cs, NULL);
    l1 = strstr(r.out, want1);
    l2 = strstr(r.out, want2);
    const char *l3 = strstr(r.out, want3);
    CHECK(r.status == 0 && l1 && l2 && l3 && l1 < l2 && l2 < l3 && !strstr(r.out, "undecryptable"),
          "bob's history:\n%s", r.out);
    cli(&r, "alice", "history", cs, NULL);
    CHECK(r.status == 0 && strstr(r.out, want1) && strstr(r.out, want3), "alice's history:\n%s", r.out);
    cli(&r, "bob", "history", cs, "--plaintext", NULL);
    CHECK(r.status == 0 && !strstr(r.out, s1) && !strstr(r.out, s3) && count_text_lines(r.out) == 3,
          "bob's history --plaintext shows texts or not 3 lines:\n%s", r.out);
    char path[4200];
    struct stat st;
    state_file(path, sizeof path, "bob", "plaintext");
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "%s: mode %o", path, (unsigned)(st.st_mode & 0777));

    /* safety numbers: the same 60 digits on both sides */
    char na[80] = "", nb[80] = "";
    cli(&r, "alice", "verify", "bob", NULL);
    const char *pa = strstr(r.out, "\"safety_number\":\"");
    CHECK(r.status == 0 && pa, "alice verify bob: %d\n%s", r.status, r.out);
    snprintf(na, sizeof na, "%.71s", pa + 17);
    cli(&r, "bob", "verify", "alice", NULL);
    const char *pb = strstr(r.out, "\"safety_number\":\"");
    CHECK(r.status == 0 && pb, "bob verify alice: %d\n%s", r.status, r.out);
    snprintf(nb, sizeof nb, "%.71s", pb + 17);
    CHECK(strlen(na) == 71 && strcmp(na, nb) == 0, "safety numbers differ: '%s' / '%s'", na, nb);

    /* marked verified; a new device of bob (a key alice has not verified)
     * makes alice's sync warn, until she marks again */
    CHECK(strstr(r.out, "\"verified\":false"), "bob's view before marking:\n%s", r.out);
    cli(&r, "alice", "verify", "bob", "--mark", NULL);
    CHECK(r.status == 0 && strstr(r.out, "\"verified\":true") && !strstr(r.out, "\"verified\":false"),
          "verify --mark: %d\n%s", r.status, r.out);
    cli(&r, "bob", "link", NULL);
    char token[256];
    snprintf(token, sizeof token, "%.*s", r.out_len ? (int)r.out_len - 1 : 0, r.out);
    CHECK(r.status == 0 && token[0], "link: %d %s", r.status, r.err);
    cli(&r, "bob2", "register-device", token, NULL);
    CHECK(r.status == 0 && cli_out_u64(&r) == bob, "bob2 registers: %d %s", r.status, r.err);
    cli(&r, "bob2", "send", cs, "from bob's new device", NULL);
    CHECK(r.status == 0 && cli_out_u64(&r), "bob2 sends: %d %s", r.status, r.err);
    cli(&r, "alice", "sync", NULL);
    char warn[160];
    snprintf(warn, sizeof warn, "{\"warning\":\"identity_changed\",\"user\":%" PRIu64 ",", bob);
    CHECK(r.status == 0 && strstr(r.out, warn) && strstr(r.out, "\"text\":\"from bob's new device\""),
          "alice's sync after bob's new device, want the warning and the text:\n%s", r.out);
    cli(&r, "alice", "verify", "bob", "--mark", NULL);
    CHECK(r.status == 0 && !strstr(r.out, "\"verified\":false"), "verify --mark again:\n%s", r.out);
    cli(&r, "alice", "sync", NULL);
    CHECK(r.status == 0 && !strstr(r.out, "identity_changed"), "still warned after marking:\n%s", r.out);

    /* a plain sync still keeps the sender keys it acks: alice's first
     * message in a new group carries her key for it; bob reads that sync
     * --plaintext, and her second message there still decrypts */
    cli(&r, "alice", "group", "pair", "bob", NULL);
    uint64_t grp = cli_out_u64(&r);
    CHECK(r.status == 0 && grp, "group: %d %s", r.status, r.err);
    char gs[32], g1[64], g2[64], wantg2[128];
    snprintf(gs, sizeof gs, "%" PRIu64, grp);
    snprintf(g1, sizeof g1, "cli-group-one-%08x", tag);
    snprintf(g2, sizeof g2, "cli-group-two-%08x", tag);
    snprintf(wantg2, sizeof wantg2, "\"text\":\"%s\"", g2);
    cli(&r, "alice", "send", gs, g1, NULL);
    CHECK(r.status == 0 && cli_out_u64(&r), "alice sends in the group: %d %s", r.status, r.err);
    cli(&r, "bob", "sync", "--plaintext", NULL);
    CHECK(r.status == 0 && !strstr(r.out, g1), "bob's plain sync: %d\n%s", r.status, r.out);
    cli(&r, "alice", "send", gs, g2, NULL);
    CHECK(r.status == 0 && cli_out_u64(&r), "alice sends again: %d %s", r.status, r.err);
    cli(&r, "bob", "sync", NULL);
    CHECK(r.status == 0 && strstr(r.out, wantg2), "after a plain sync, bob cannot read alice's group text:\n%s",
          r.out);
    const char *secrets_g[2] = {g1, g2};

    /* a message sent --plaintext is stored as it is: the scan finds it */
    cli(&r, "alice", "send", cs, control, "--plaintext", NULL);
    CHECK(r.status == 0 && cli_out_u64(&r), "control: %d %s", r.status, r.err);
    int found = 0;
    for (int i = 0; i < 50 && !(found = server_files_holding(control)); i++) h_sleep_ms(100);
    CHECK(found, "the clear control message is nowhere under %s: the scan proves nothing", S.dir);
    const char *secrets[3] = {s1, s2, s3};
    for (int i = 0; i < 3; i++)
        CHECK(server_files_holding(secrets[i]) == 0, "'%s' is in the server's files", secrets[i]);
    for (int i = 0; i < 2; i++)
        CHECK(server_files_holding(secrets_g[i]) == 0, "'%s' is in the server's files", secrets_g[i]);
}

int main(void) {
    const char *bin = getenv("PARLEY_BIN");
    snprintf(CLI, sizeof CLI, "%s", bin && *bin ? bin : "./build/parley");
    char *slash = strrchr(CLI, '/');
    snprintf(slash ? slash + 1 : CLI, sizeof CLI - (size_t)(slash ? slash + 1 - CLI : 0), "parley-cli");
    if (access(CLI, X_OK) != 0) {
        printf("FAIL cli_binary: %s not executable\n", CLI);
        return 1;
    }
    if (sodium_init() < 0 || h_server_start(&S, NULL) != 0) {
        printf("FAIL server_starts\n");
        return 1;
    }
    RUN(two_users_encrypted);
    if (!h_server_survived(&S)) check_failures_total++;
    h_server_destroy(&S);
    CHECK_EXIT();
}
