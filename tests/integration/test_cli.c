/* test_cli.c -- parley-cli itself, driven as a user drives it against a
 * real server: each subcommand's output (ids, seqs, JSON lines), its exit
 * status (0 ok, 1 failure, 2 usage), per-command --help, typing indicators
 * shown by sync, and the interactive mode through a pseudo-terminal.
 *
 * parley-cli is found next to the server binary (PARLEY_BIN's directory).
 * Every parley-cli started here is waited for with a deadline and killed by
 * its pid when the deadline passes (and by the kernel if this test dies). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../check.h"
#include "cli_runner.h"
#include "harness.h"

#define NEED(x) CHECK((x), "%s", #x)

enum {
    OUT_CAP = 1 << 16,
    CLI_TIMEOUT_MS = 30000,     /* liveness bound for one parley-cli run */
    WAIT_MS = 20000,            /* liveness bound for output to appear */
    MAX_ARGV = 32,
};

static h_server S;
static char CLI[600];

/* A parley-cli running in the background, its stdout read as it comes. */
typedef struct cli_bg {
    pid_t pid;
    int out_fd;             /* stdout (a pipe, or the pty master) */
    int in_fd;              /* stdin: pty master for interactive, else -1 */
    char out[OUT_CAP];
    size_t out_len;
} cli_bg;

static void state_path(char *buf, size_t cap, const char *who) {
    snprintf(buf, cap, "%s/cli-%s", S.dir, who);
}

static int build_argv(const char *who, const char **argv, const char *first, va_list ap) {
    static char state[3][400];
    static int k;
    char *st = state[k++ % 3];
    state_path(st, sizeof state[0], who);
    int n = 0;
    argv[n++] = CLI;
    argv[n++] = "--state";
    argv[n++] = st;
    argv[n++] = "--server";
    argv[n++] = S.url;
    for (const char *a = first; a && n < MAX_ARGV - 1; a = va_arg(ap, const char *)) argv[n++] = a;
    argv[n] = NULL;
    return n;
}

static void child_exec(const char **argv) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

/* Runs `parley-cli --state S.dir/cli-WHO --server URL args... NULL` with
 * stdin_text (NULL: /dev/null) and collects everything. */
static void cli(cli_run *r, const char *who, const char *stdin_text, const char *first, ...) {
    const char *argv[MAX_ARGV];
    va_list ap;
    va_start(ap, first);
    build_argv(who, argv, first, ap);
    va_end(ap);
    cli_run_argv(r, argv, stdin_text, CLI_TIMEOUT_MS, first ? first : "chat");
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Starts parley-cli in the background; interactive: on a pseudo-terminal
 * (stdin and stdout both the pty), else stdout on a pipe. 0 or -1. */
static int cli_bg_start(cli_bg *b, int interactive, const char *who, const char *first, ...) {
    memset(b, 0, sizeof *b);
    b->in_fd = -1;
    const char *argv[MAX_ARGV];
    va_list ap;
    va_start(ap, first);
    build_argv(who, argv, first, ap);
    va_end(ap);
    if (interactive) {
        int master;
        pid_t pid = forkpty(&master, NULL, NULL, NULL);
        if (pid < 0) return -1;
        if (pid == 0) child_exec(argv);
        b->pid = pid;
        b->out_fd = master;
        b->in_fd = master;
        return 0;
    }
    int o[2];
    if (pipe(o)) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(o[1], 1);
        close(o[0]);
        child_exec(argv);
    }
    close(o[1]);
    b->pid = pid;
    b->out_fd = o[0];
    return 0;
}

/* Reads b's output until it contains needle (searching from `from`), or
 * WAIT_MS. Returns a pointer to the match, or NULL. */
static const char *cli_bg_wait_for(cli_bg *b, size_t from, const char *needle) {
    uint64_t deadline = h_now_ms() + WAIT_MS;
    for (;;) {
        if (from <= b->out_len) {
            const char *hit = strstr(b->out + from, needle);
            if (hit) return hit;
        }
        if (h_now_ms() >= deadline) break;
        struct pollfd p = {.fd = b->out_fd, .events = POLLIN};
        if (poll(&p, 1, 200) > 0 && !cli_drain_into(b->out_fd, b->out, &b->out_len, OUT_CAP)) {
            /* EOF: one last look */
            const char *hit = from <= b->out_len ? strstr(b->out + from, needle) : NULL;
            return hit;
        }
    }
    fprintf(stderr, "  waited %d ms for \"%s\"; output so far:\n%s\n", WAIT_MS, needle, b->out);
    return NULL;
}

static int cli_bg_type(cli_bg *b, const char *line) {
    size_t len = strlen(line);
    return write(b->in_fd, line, len) == (ssize_t)len ? 0 : -1;
}

/* Waits (bounded) for b to exit; its exit status, or -1 after killing it. */
static int cli_bg_finish(cli_bg *b, int timeout_ms) {
    uint64_t deadline = h_now_ms() + (uint64_t)timeout_ms;
    int st = 0, rc = -1;
    while (b->pid > 0) {
        /* keep reading so the child never blocks on a full pipe or pty */
        struct pollfd p = {.fd = b->out_fd, .events = POLLIN};
        if (poll(&p, 1, 50) > 0) cli_drain_into(b->out_fd, b->out, &b->out_len, OUT_CAP);
        if (waitpid(b->pid, &st, WNOHANG) == b->pid) {
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            b->pid = 0;
            break;
        }
        if (h_now_ms() >= deadline) {
            fprintf(stderr, "  background parley-cli did not exit; killing pid %d\n", (int)b->pid);
            kill(b->pid, SIGKILL);
            waitpid(b->pid, NULL, 0);
            b->pid = 0;
        }
    }
    if (b->out_fd >= 0) close(b->out_fd);
    b->out_fd = b->in_fd = -1;
    return rc;
}

/* ------------------------------------------------------------- fixture */

/* Users made once and shared by the cases below. */
static uint64_t alice_id, bob_id, carol_id, ab_conv;
static uint64_t ab_last;    /* seq of the last of alice's three texts to bob */
static char carol_name[40];

/* ------------------------------------------------------------------ cases */

static void help_is_per_command(void) {
    cli_run r;
    cli(&r, "nobody", NULL, "send", "--help", NULL);
    CHECK(r.status == 0, "send --help: exit %d", r.status);
    CHECK(strncmp(r.out, "usage: parley-cli", 17) == 0, "send --help printed:\n%s", r.out);
    CHECK(strstr(r.out, " send CONV TEXT\n") != NULL, "send --help lacks its synopsis:\n%s", r.out);
    CHECK(strstr(r.out, "register NAME") == NULL,
          "send --help printed the global usage (lists register):\n%s", r.out);
    cli(&r, "nobody", NULL, "history", "--help", NULL);
    CHECK(r.status == 0 && strstr(r.out, "history CONV [--limit N] [--before SEQ]") &&
              !strstr(r.out, "send CONV"),
          "history --help: exit %d:\n%s", r.status, r.out);
    /* with no command: the global usage, every command in it */
    cli(&r, "nobody", NULL, "--help", NULL);
    CHECK(r.status == 0, "--help: exit %d", r.status);
    const char *cmds[] = {"register NAME", "register-device TOKEN", "link", "whoami", "direct USER",
                          "group NAME", "add CONV", "remove CONV", "leave CONV", "conversations",
                          "send CONV", "sync [--wait S]", "history CONV", "read CONV SEQ",
                          "receipts CONV", "typing CONV", "presence USER", "devices [USER]",
                          "remove-device ID"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        CHECK(strstr(r.out, cmds[i]) != NULL, "global usage lacks \"%s\"", cmds[i]);
}

static void usage_errors_exit_2(void) {
    cli_run r;
    cli(&r, "nobody", NULL, "frobnicate", NULL);
    CHECK(r.status == 2 && strstr(r.err, "unknown command frobnicate"),
          "unknown command: exit %d, stderr %s", r.status, r.err);
    cli(&r, "nobody", NULL, "send", "5", NULL);
    CHECK(r.status == 2 && strstr(r.err, "usage: parley-cli send CONV TEXT"),
          "send with one argument: exit %d, stderr %s", r.status, r.err);
    cli(&r, "nobody", NULL, "history", "1", "--wait", "3", NULL);
    CHECK(r.status == 2, "--wait on history: exit %d", r.status);
    cli(&r, "nobody", NULL, "sync", "--wait", "soon", NULL);
    CHECK(r.status == 2 && strstr(r.err, "bad number"), "--wait soon: exit %d", r.status);
    cli(&r, "nobody", NULL, "--bogus", "1", "conversations", NULL);
    CHECK(r.status == 2, "unknown option: exit %d", r.status);
    CHECK(r.out_len == 0, "usage errors printed on stdout: %s", r.out);
}

static void no_identity_exit_1(void) {
    cli_run r;
    cli(&r, "nobody", NULL, "conversations", NULL);
    CHECK(r.status == 1, "conversations without an identity: exit %d", r.status);
    CHECK(strstr(r.err, "no identity") && strstr(r.err, "register"),
          "stderr does not say to register: %s", r.err);
}

static void register_and_whoami(void) {
    cli_run r;
    cli(&r, "alice", NULL, "register", "alice", NULL);
    CHECK(r.status == 0, "register alice: exit %d", r.status);
    alice_id = cli_out_u64(&r);
    CHECK(alice_id != 0, "register printed '%s', want one user id", r.out);
    cli(&r, "bob", NULL, "register", "bob", NULL);
    bob_id = cli_out_u64(&r);
    CHECK(r.status == 0 && bob_id != 0 && bob_id != alice_id, "register bob: exit %d, '%s'",
          r.status, r.out);
    snprintf(carol_name, sizeof carol_name, "carol");
    cli(&r, "carol", NULL, "register", carol_name, NULL);
    carol_id = cli_out_u64(&r);
    CHECK(r.status == 0 && carol_id != 0, "register carol: exit %d", r.status);

    /* the state directory is private */
    char dir[400];
    state_path(dir, sizeof dir, "alice");
    struct stat sb;
    NEED(stat(dir, &sb) == 0);
    CHECK((sb.st_mode & 077) == 0, "state dir mode %o, want 0700", (unsigned)(sb.st_mode & 0777));

    cli(&r, "alice", NULL, "whoami", NULL);
    char want[200];
    snprintf(want, sizeof want, "{\"user_id\":%" PRIu64 ",\"device_id\":", alice_id);
    CHECK(r.status == 0 && strncmp(r.out, want, strlen(want)) == 0 &&
              strstr(r.out, "\"name\":\"alice\""),
          "whoami: exit %d, '%s'", r.status, r.out);

    /* a second register into the same state, and a taken name: exit 1 */
    cli(&r, "alice", NULL, "register", "alice2", NULL);
    CHECK(r.status == 1 && strstr(r.err, "already holds"), "register twice: exit %d, %s", r.status,
          r.err);
    cli(&r, "alice-again", NULL, "register", "alice", NULL);
    CHECK(r.status == 1 && strstr(r.err, "(409)"), "register a taken name: exit %d, %s", r.status,
          r.err);
    cli(&r, "bad-name", NULL, "register", "Not Valid!", NULL);
    CHECK(r.status == 1 && strstr(r.err, "(400)"), "register a bad name: exit %d, %s", r.status,
          r.err);
}

static void direct_send_sync_history(void) {
    NEED(alice_id && bob_id);
    cli_run r;
    cli(&r, "alice", NULL, "direct", "bob", NULL);
    ab_conv = cli_out_u64(&r);
    CHECK(r.status == 0 && ab_conv, "direct bob: exit %d '%s'", r.status, r.out);
    cli(&r, "bob", NULL, "direct", "alice", NULL);
    CHECK(r.status == 0 && cli_out_u64(&r) == ab_conv, "bob's direct alice: '%s', want %" PRIu64,
          r.out, ab_conv);
    cli(&r, "alice", NULL, "direct", "nosuchuser", NULL);
    CHECK(r.status == 1 && strstr(r.err, "no user named \"nosuchuser\" (404)"),
          "direct to an unknown user: exit %d, %s", r.status, r.err);

    char conv[32];
    snprintf(conv, sizeof conv, "%" PRIu64, ab_conv);
    cli(&r, "alice", NULL, "send", conv, "hello bob", NULL);
    uint64_t s1 = cli_out_u64(&r);
    CHECK(r.status == 0 && s1, "send: exit %d '%s'", r.status, r.out);
    /* "-": the text is stdin, without echo's line end; quotes survive JSON */
    cli(&r, "alice", "say \"hi\"\tplease\n", "send", conv, "-", NULL);
    uint64_t s2 = cli_out_u64(&r);
    CHECK(r.status == 0 && s2 == s1 + 1, "send -: exit %d '%s' (first seq %" PRIu64 ")", r.status,
          r.out, s1);
    /* "--" ends the options, so a message may start with -- */
    cli(&r, "alice", NULL, "send", conv, "--", "--not-an-option", NULL);
    uint64_t s3 = cli_out_u64(&r);
    CHECK(r.status == 0 && s3 == s2 + 1, "send -- --text: exit %d '%s'", r.status, r.out);
    ab_last = s3;

    cli(&r, "bob", NULL, "sync", NULL);
    CHECK(r.status == 0, "bob sync: exit %d", r.status);
    char want[256];
    snprintf(want, sizeof want, "{\"conv\":%" PRIu64 ",\"seq\":%" PRIu64 ",\"user_seq\":", ab_conv,
             s1);
    const char *l1 = strstr(r.out, want);
    CHECK(l1, "sync output lacks %s:\n%s", want, r.out);
    snprintf(want, sizeof want, "\"sender\":%" PRIu64 ",", alice_id);
    CHECK(strstr(l1, want) && strstr(l1, "\"type\":\"text\",\"text\":\"hello bob\""),
          "sync line for seq %" PRIu64 ": %s", s1, l1);
    const char *l2 = strstr(r.out, "\"text\":\"say \\\"hi\\\"\\tplease\"");
    const char *l3 = strstr(r.out, "\"text\":\"--not-an-option\"");
    CHECK(l2 && l3 && l1 < l2 && l2 < l3, "sync lines missing or out of order:\n%s", r.out);
    /* every line one JSON object */
    for (const char *p = r.out; *p;) {
        const char *nl = strchr(p, '\n');
        NEED(nl);
        CHECK(p[0] == '{' && nl[-1] == '}', "not a JSON object line: %.*s", (int)(nl - p), p);
        p = nl + 1;
    }
    /* the cursor advanced: a second sync prints nothing */
    cli(&r, "bob", NULL, "sync", NULL);
    CHECK(r.status == 0 && r.out_len == 0, "second sync: exit %d, printed:\n%s", r.status, r.out);

    cli(&r, "bob", NULL, "history", conv, "--limit", "2", NULL);
    CHECK(r.status == 0 && count_lines(r.out) == 2, "history --limit 2: exit %d:\n%s", r.status,
          r.out);
    snprintf(want, sizeof want, "{\"conv\":%" PRIu64 ",\"seq\":%" PRIu64 ",\"sender\"", ab_conv, s2);
    const char *h2 = strstr(r.out, want);
    snprintf(want, sizeof want, "{\"conv\":%" PRIu64 ",\"seq\":%" PRIu64 ",\"sender\"", ab_conv, s3);
    const char *h3 = strstr(r.out, want);
    CHECK(h2 && h3 && h2 < h3, "history: the last two, oldest first:\n%s", r.out);
    char before[32];
    snprintf(before, sizeof before, "%" PRIu64, s2);
    cli(&r, "bob", NULL, "history", conv, "--before", before, NULL);
    snprintf(want, sizeof want, "\"seq\":%" PRIu64 ",", s1);
    CHECK(r.status == 0 && strstr(r.out, want) && !strstr(r.out, "not-an-option"),
          "history --before %s:\n%s", before, r.out);

    /* a conversation bob is not in */
    cli(&r, "carol", NULL, "history", conv, NULL);
    CHECK(r.status == 1 && strstr(r.err, "(403)"), "carol reads alice+bob: exit %d, %s", r.status,
          r.err);
    cli(&r, "carol", NULL, "send", conv, "intruder", NULL);
    CHECK(r.status == 1 && strstr(r.err, "(403)"), "carol sends to alice+bob: exit %d, %s",
          r.status, r.err);
    cli(&r, "bob", NULL, "send", "0", "x", NULL);
    CHECK(r.status == 2 && strstr(r.err, "not a conversation id"), "send to 0: exit %d",
          r.status);
}

static void read_receipts_conversations(void) {
    NEED(ab_conv && ab_last > 2);
    char conv[32], seq[32];
    snprintf(conv, sizeof conv, "%" PRIu64, ab_conv);
    cli_run r;
    cli(&r, "bob", NULL, "conversations", NULL);
    char want[256];
    snprintf(want, sizeof want, "{\"id\":%" PRIu64 ",\"kind\":\"direct\",\"name\":\"\",\"last_seq\":%" PRIu64
                                ",\"read_seq\":",
             ab_conv, ab_last);
    const char *line = strstr(r.out, want);
    CHECK(r.status == 0 && line && strstr(line, ",\"unread\":3,\"members\":["),
          "bob's conversations: exit %d, want %s...unread 3 in:\n%s", r.status, want, r.out);
    snprintf(want, sizeof want, "\"members\":[%" PRIu64 ",%" PRIu64 "]", alice_id, bob_id);
    char want2[128];
    snprintf(want2, sizeof want2, "\"members\":[%" PRIu64 ",%" PRIu64 "]", bob_id, alice_id);
    CHECK(strstr(line, want) || strstr(line, want2), "members of the direct conversation: %s",
          line);
    /* read up to the second of the three: one unread left */
    snprintf(seq, sizeof seq, "%" PRIu64, ab_last - 1);
    cli(&r, "bob", NULL, "read", conv, seq, NULL);
    CHECK(r.status == 0 && r.out_len == 0, "read: exit %d '%s'", r.status, r.out);
    cli(&r, "bob", NULL, "read", conv, "two", NULL);
    CHECK(r.status == 2, "read with a bad seq: exit %d", r.status);
    cli(&r, "bob", NULL, "conversations", NULL);
    snprintf(want, sizeof want, "\"last_seq\":%" PRIu64 ",\"read_seq\":%" PRIu64 ",\"unread\":1,",
             ab_last, ab_last - 1);
    CHECK(r.status == 0 && strstr(r.out, want), "after read %s: want %s in:\n%s", seq, want,
          r.out);
    cli(&r, "alice", NULL, "receipts", conv, NULL);
    snprintf(want, sizeof want, "{\"user\":%" PRIu64 ",", bob_id);
    line = strstr(r.out, want);
    CHECK(r.status == 0 && line && count_lines(r.out) == 2, "receipts: exit %d:\n%s", r.status,
          r.out);
    snprintf(want, sizeof want, "\"read_seq\":%" PRIu64 "}\n", ab_last - 1);
    CHECK(strstr(line, want) && strchr(line, '\n') == strstr(line, want) + strlen(want) - 1,
          "bob's receipt line lacks %s: %s", want, line);
}

static void group_add_remove_leave(void) {
    NEED(alice_id && bob_id && carol_id);
    cli_run r;
    /* the README's walkthrough: group NAME bob carol */
    cli(&r, "alice", NULL, "group", "friends", "bob", carol_name, NULL);
    uint64_t g = cli_out_u64(&r);
    CHECK(r.status == 0 && g, "group friends bob carol: exit %d '%s'", r.status, r.out);
    char conv[32];
    snprintf(conv, sizeof conv, "%" PRIu64, g);
    cli(&r, "carol", NULL, "conversations", NULL);
    char want[256];
    snprintf(want, sizeof want, "{\"id\":%" PRIu64 ",\"kind\":\"group\",\"name\":\"friends\",", g);
    CHECK(strstr(r.out, want), "carol's conversations lack the group:\n%s", r.out);
    cli(&r, "alice", NULL, "remove", conv, "bob", NULL);
    CHECK(r.status == 0, "remove bob: exit %d", r.status);
    cli(&r, "bob", NULL, "send", conv, "am I in?", NULL);
    CHECK(r.status == 1 && strstr(r.err, "(403)"), "removed bob sends: exit %d, %s", r.status,
          r.err);
    cli(&r, "alice", NULL, "add", conv, "bob", NULL);
    CHECK(r.status == 0, "add bob back: exit %d", r.status);
    cli(&r, "bob", NULL, "send", conv, "back again", NULL);
    CHECK(r.status == 0 && cli_out_u64(&r), "re-added bob sends: exit %d, %s", r.status, r.err);
    cli(&r, "carol", NULL, "leave", conv, NULL);
    CHECK(r.status == 0, "carol leaves: exit %d", r.status);
    cli(&r, "carol", NULL, "history", conv, NULL);
    CHECK(r.status == 1 && strstr(r.err, "(403)"), "carol after leaving reads: exit %d",
          r.status);
    /* bob's sync shows the membership changes as JSON lines */
    cli(&r, "bob", NULL, "sync", NULL);
    snprintf(want, sizeof want, "\"type\":\"membership\",\"action\":\"removed\",\"users\":[%" PRIu64 "]",
             bob_id);
    CHECK(strstr(r.out, want), "bob's sync lacks %s:\n%s", want, r.out);
    snprintf(want, sizeof want, "\"action\":\"left\",\"users\":[%" PRIu64 "]", carol_id);
    CHECK(strstr(r.out, want), "bob's sync lacks %s:\n%s", want, r.out);
    snprintf(want, sizeof want, "\"action\":\"created\",\"users\":[");
    const char *cr = strstr(r.out, want);
    CHECK(cr && strstr(cr, "\"kind\":\"group\",\"name\":\"friends\""), "no created line:\n%s",
          r.out);
}

static void link_devices_remove(void) {
    NEED(bob_id);
    cli_run r;
    cli(&r, "bob", NULL, "link", NULL);
    CHECK(r.status == 0 && r.out_len > 1 && count_lines(r.out) == 1, "link: exit %d '%s'",
          r.status, r.out);
    char token[256];
    snprintf(token, sizeof token, "%.*s", (int)r.out_len - 1, r.out);
    cli(&r, "bob2", NULL, "register-device", token, NULL);
    CHECK(r.status == 0 && cli_out_u64(&r) == bob_id, "register-device: exit %d '%s', want %" PRIu64,
          r.status, r.out, bob_id);
    cli(&r, "bob3", NULL, "register-device", token, NULL);
    CHECK(r.status == 1, "a token used twice: exit %d", r.status);
    /* encrypted by default: a linked device reads from its link point on.
     * Its first sync gets bob's inbox, alice's earlier messages shown as
     * undecryptable (never dropped, never in the clear); what alice sends
     * now reaches it and is decrypted */
    cli(&r, "bob2", NULL, "sync", NULL);
    CHECK(r.status == 0 && strstr(r.out, "\"undecryptable\"") && !strstr(r.out, "hello bob"),
          "bob2's first sync:\n%s", r.out);
    char ab[32];
    snprintf(ab, sizeof ab, "%" PRIu64, ab_conv);
    cli(&r, "alice", NULL, "send", ab, "after bob linked", NULL);
    CHECK(r.status == 0, "alice sends after the link: exit %d %s", r.status, r.err);
    cli(&r, "bob2", NULL, "sync", NULL);
    CHECK(r.status == 0 && strstr(r.out, "\"text\":\"after bob linked\""), "bob2 after the link:\n%s",
          r.out);
    cli(&r, "bob", NULL, "devices", NULL);
    char want[128];
    snprintf(want, sizeof want, "{\"user\":%" PRIu64 ",", bob_id);
    CHECK(r.status == 0 && strncmp(r.out, want, strlen(want)) == 0 && count_lines(r.out) == 1,
          "devices: exit %d '%s'", r.status, r.out);
    const char *devs = strstr(r.out, "\"devices\":[");
    NEED(devs);
    unsigned d1 = 0, d2 = 0;
    CHECK(sscanf(devs, "\"devices\":[%u,%u]", &d1, &d2) == 2, "want two devices: %s", r.out);
    cli(&r, "bob2", NULL, "whoami", NULL);
    unsigned mine = 0;
    const char *dv = strstr(r.out, "\"device_id\":");
    NEED(dv && sscanf(dv, "\"device_id\":%u", &mine) == 1);
    char id[16];
    snprintf(id, sizeof id, "%u", mine);
    cli(&r, "bob", NULL, "remove-device", id, NULL);
    CHECK(r.status == 0, "remove-device %s: exit %d", id, r.status);
    cli(&r, "alice", NULL, "devices", "bob", NULL);
    CHECK(r.status == 0 && strstr(r.out, "\"devices\":[") &&
              sscanf(strstr(r.out, "\"devices\":["), "\"devices\":[%u,%u]", &d1, &d2) == 1 &&
              d1 != mine,
          "bob's devices after removing %u: %s", mine, r.out);
    cli(&r, "bob2", NULL, "conversations", NULL);
    CHECK(r.status == 1, "removed device still signs in: exit %d", r.status);
    cli(&r, "bob", NULL, "remove-device", "0", NULL);
    CHECK(r.status == 2, "remove-device 0: exit %d", r.status);
}

static void presence_json(void) {
    NEED(alice_id && bob_id && ab_conv);
    cli_run r;
    /* nobody of bob's is connected now; he was online earlier */
    cli(&r, "alice", NULL, "presence", "bob", NULL);
    char want[128];
    snprintf(want, sizeof want, "{\"user\":%" PRIu64 ",\"name\":\"bob\",\"online\":false,\"last_seen\":",
             bob_id);
    CHECK(r.status == 0 && strncmp(r.out, want, strlen(want)) == 0 && count_lines(r.out) == 1,
          "presence bob: exit %d '%s'", r.status, r.out);
    unsigned long long seen = 0;
    CHECK(sscanf(r.out + strlen(want), "%llu", &seen) == 1 && seen > 0,
          "last_seen of a user seen before: %s", r.out);
    /* while bob has a connection open (sync --wait), he is online. His
     * sync is live (and its SIGTERM handler in place) once it prints a
     * message sent after it started. */
    cli_bg b;
    NEED(cli_bg_start(&b, 0, "bob", "sync", "--wait", "60", NULL) == 0);
    char conv[32];
    snprintf(conv, sizeof conv, "%" PRIu64, ab_conv);
    cli(&r, "alice", NULL, "send", conv, "while bob syncs", NULL);
    int live = r.status == 0 && cli_bg_wait_for(&b, 0, "while bob syncs") != NULL;
    int online = 0;
    for (int i = 0; i < 100 && !online; i++) {
        cli(&r, "alice", NULL, "presence", "bob", NULL);
        online = strstr(r.out, "\"online\":true") != NULL;
        if (!online) h_sleep_ms(100);
    }
    kill(b.pid, SIGTERM);
    int rc = cli_bg_finish(&b, 10000);
    CHECK(live, "bob's sync never printed the message sent while it ran:\n%s", b.out);
    CHECK(online, "bob never shown online while connected: %s", r.out);
    CHECK(rc == 0, "sync ended by SIGTERM: exit %d", rc);
    /* a stranger's presence is refused */
    cli(&r, "dave", NULL, "register", "dave", NULL);
    NEED(r.status == 0);
    cli(&r, "dave", NULL, "presence", "bob", NULL);
    CHECK(r.status == 1, "presence of a user sharing no conversation: exit %d '%s'", r.status,
          r.out);
}

static void typing_shown_by_sync(void) {
    NEED(ab_conv);
    char conv[32];
    snprintf(conv, sizeof conv, "%" PRIu64, ab_conv);
    cli_bg b;
    NEED(cli_bg_start(&b, 0, "alice", "sync", "--wait", "60", NULL) == 0);
    /* a message sent now reaches alice's sync, which is then live */
    cli_run r;
    cli(&r, "bob", NULL, "send", conv, "marker before typing", NULL);
    int ok_marker = r.status == 0 && cli_bg_wait_for(&b, 0, "marker before typing") != NULL;
    cli(&r, "bob", NULL, "typing", conv, "on", NULL);
    int typed = r.status;
    char want[160];
    snprintf(want, sizeof want, "{\"conv\":%" PRIu64 ",\"type\":\"typing\",\"user\":%" PRIu64
                                ",\"device\":",
             ab_conv, bob_id);
    const char *line = ok_marker && typed == 0 ? cli_bg_wait_for(&b, 0, want) : NULL;
    int on_ok = line && strstr(line, "\"typing\":true}\n");
    cli(&r, "bob", NULL, "typing", conv, "off", NULL);
    const char *off = line ? cli_bg_wait_for(&b, (size_t)(line - b.out) + 1, want) : NULL;
    int off_ok = off && strstr(off, "\"typing\":false}\n");
    kill(b.pid, SIGINT);
    int rc = cli_bg_finish(&b, 10000);
    CHECK(ok_marker, "alice's sync never showed bob's message:\n%s", b.out);
    CHECK(typed == 0, "typing on: exit %d", typed);
    CHECK(on_ok, "alice's sync shows no typing line %s...true:\n%s", want, b.out);
    CHECK(off_ok, "alice's sync shows no typing-off line:\n%s", b.out);
    CHECK(rc == 0, "sync ended by SIGINT: exit %d", rc);
    cli(&r, "bob", NULL, "typing", conv, "maybe", NULL);
    CHECK(r.status == 2, "typing maybe: exit %d", r.status);
}

static void interactive_on_a_pty(void) {
    NEED(alice_id && bob_id && ab_conv);
    cli_bg b;
    NEED(cli_bg_start(&b, 1, "alice", NULL) == 0);
    char want[200];
    snprintf(want, sizeof want, "* signed in as alice, user %" PRIu64 " device ", alice_id);
    const char *hi = cli_bg_wait_for(&b, 0, want);
    if (!hi) cli_bg_finish(&b, 1000);
    CHECK(hi, "no sign-in line");
    size_t mark = b.out_len;
    NEED(cli_bg_type(&b, "/help\n") == 0);
    const char *help = cli_bg_wait_for(&b, mark, "/direct USER");
    mark = b.out_len;
    NEED(cli_bg_type(&b, "hello?\n") == 0);
    const char *nosel = cli_bg_wait_for(&b, mark, "! no conversation selected");
    mark = b.out_len;
    NEED(cli_bg_type(&b, "/direct bob\n") == 0);
    snprintf(want, sizeof want, "* talking with bob in %" PRIu64, ab_conv);
    const char *sel = cli_bg_wait_for(&b, mark, want);
    mark = b.out_len;
    NEED(cli_bg_type(&b, "hello from the terminal\n") == 0);
    const char *sent = cli_bg_wait_for(&b, mark, "* sent #");

    /* bob answers with an escape sequence: shown, not obeyed */
    char conv[32];
    snprintf(conv, sizeof conv, "%" PRIu64, ab_conv);
    cli_run r;
    mark = b.out_len;
    cli(&r, "bob", NULL, "send", conv, "\x1b[2Jcleared?", NULL);
    int bob_sent = r.status == 0;
    snprintf(want, sizeof want, "bob: \\x1b[2Jcleared?");
    const char *shown = cli_bg_wait_for(&b, mark, want);
    int raw_escape = memmem(b.out, b.out_len, "\x1b[2J", 4) != NULL;
    mark = b.out_len;
    cli(&r, "bob", NULL, "typing", conv, "on", NULL);
    snprintf(want, sizeof want, "~ bob is typing in %" PRIu64, ab_conv);
    const char *typing = cli_bg_wait_for(&b, mark, want);
    mark = b.out_len;
    NEED(cli_bg_type(&b, "/list\n") == 0);
    snprintf(want, sizeof want, "* >%" PRIu64 " direct", ab_conv);
    const char *list = cli_bg_wait_for(&b, mark, want);
    /* /to, /history N, /read, /group */
    mark = b.out_len;
    snprintf(want, sizeof want, "/to %" PRIu64 "\n", ab_conv);
    NEED(cli_bg_type(&b, want) == 0);
    snprintf(want, sizeof want, "* talking in %" PRIu64, ab_conv);
    const char *to = cli_bg_wait_for(&b, mark, want);
    mark = b.out_len;
    NEED(cli_bg_type(&b, "/history 2\n") == 0);
    /* the last two: alice's line, then bob's escaped one */
    const char *h1 = cli_bg_wait_for(&b, mark, "you: hello from the terminal");
    const char *h2 = h1 ? cli_bg_wait_for(&b, (size_t)(h1 - b.out), "bob: \\x1b[2Jcleared?") : NULL;
    NEED(cli_bg_type(&b, "/read\n") == 0);
    mark = b.out_len;
    NEED(cli_bg_type(&b, "/group pals bob\n") == 0);
    const char *grp = cli_bg_wait_for(&b, mark, "* created group pals: ");
    mark = b.out_len;
    NEED(cli_bg_type(&b, "/nonsense\n") == 0);
    const char *unknown = cli_bg_wait_for(&b, mark, "! unknown command /nonsense");
    NEED(cli_bg_type(&b, "/quit\n") == 0);
    int rc = cli_bg_finish(&b, 15000);
    CHECK(help && nosel && sel, "help/no selection/direct lines missing:\n%s", b.out);
    CHECK(sent, "no '* sent #' after a plain line:\n%s", b.out);
    CHECK(bob_sent && shown, "bob's message not shown (escaped) in alice's terminal:\n%s", b.out);
    CHECK(!raw_escape, "a raw escape sequence reached the terminal");
    CHECK(typing, "no typing status line in the terminal:\n%s", b.out);
    CHECK(list && unknown, "/list or unknown-command line missing:\n%s", b.out);
    CHECK(to && h1 && h2, "/to or /history 2 lines missing:\n%s", b.out);
    CHECK(grp, "/group line missing:\n%s", b.out);
    CHECK(rc == 0, "/quit: exit %d", rc);
    /* /read marked the conversation read; /group made a group with bob */
    cli(&r, "alice", NULL, "conversations", NULL);
    snprintf(want, sizeof want, "{\"id\":%" PRIu64 ",", ab_conv);
    const char *line = strstr(r.out, want);
    CHECK(line && strstr(line, ",\"unread\":0,") &&
              strstr(line, ",\"unread\":0,") < strchr(line, '\n'),
          "after /read, alice's line: %s", line ? line : r.out);
    CHECK(strstr(r.out, "\"kind\":\"group\",\"name\":\"pals\""), "no group pals:\n%s", r.out);

    /* what alice typed reached bob */
    cli(&r, "bob", NULL, "sync", NULL);
    CHECK(strstr(r.out, "\"text\":\"hello from the terminal\""), "bob's sync:\n%s", r.out);
}

static void server_down_exit_1(void) {
    /* a port nobody listens on */
    int port = h_free_port();
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d", port);
    cli_run r;
    /* a later --server wins over the harness's */
    cli(&r, "alice", NULL, "--server", url, "conversations", NULL);
    CHECK(r.status == 1, "no server: exit %d", r.status);
    CHECK(r.err_len > 0 && strstr(r.err, "parley-cli: conversations:"),
          "no server: stderr '%s'", r.err);
}

int main(void) {
    const char *bin = getenv("PARLEY_BIN");
    snprintf(CLI, sizeof CLI, "%s", bin && *bin ? bin : "./build/parley");
    char *slash = strrchr(CLI, '/');
    snprintf(slash ? slash + 1 : CLI, sizeof CLI - (size_t)(slash ? slash + 1 - CLI : 0),
             "parley-cli");
    if (access(CLI, X_OK) != 0) {
        printf("FAIL cli_binary: %s not executable\n", CLI);
        return 1;
    }
    if (h_server_start(&S, NULL) != 0) {
        printf("FAIL server_starts\n");
        return 1;
    }
    RUN(help_is_per_command);
    RUN(usage_errors_exit_2);
    RUN(no_identity_exit_1);
    RUN(register_and_whoami);
    RUN(direct_send_sync_history);
    RUN(read_receipts_conversations);
    RUN(group_add_remove_leave);
    RUN(link_devices_remove);
    RUN(presence_json);
    RUN(typing_shown_by_sync);
    RUN(interactive_on_a_pty);
    RUN(server_down_exit_1);
    if (!h_server_survived(&S)) check_failures_total++;
    h_server_destroy(&S);
    CHECK_EXIT();
}
