/* main.c -- parley-cli: arguments and the scriptable subcommands. Every
 * subcommand prints its result on stdout (ids, seqs, JSON lines) and, on
 * failure, one line "parley-cli: CMD: why (status)" on stderr and exits 1
 * (2 for usage errors). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "parley_mqtt.h"

enum {
    EXIT_USAGE = 2,
    MAX_ARGS = 256,
    MAX_TEXT = 65536,                  /* SendMessage.body limit */
    HISTORY_PAGE = 200,                /* the server's largest page */
    HISTORY_MAX = 1000000,             /* --limit bound: pages are held in memory */
    SYNC_IDLE_MS = 15000,              /* no frame at all for this long before SyncDone: give up */
    SYNC_WAIT_MAX_S = 7 * 24 * 3600,
};

static const char USAGE[] =
    "usage: " CLI_NAME " [--state DIR] [--server ws[s]://HOST:PORT[,...]] [--tls-ca FILE] [COMMAND ARGS...]\n"
    "\n"
    "  register NAME              new user and its first device; prints the user id\n"
    "  register-device TOKEN      add this device to the user who made TOKEN; prints the user id\n"
    "  link                       prints a short-lived token for register-device\n"
    "  whoami                     prints this device's identity as JSON\n"
    "  mqtt-password              prints this device's MQTT client id and a fresh password\n"
    "  direct USER                prints the 1:1 conversation id with USER\n"
    "  group NAME [USER...]       creates a group; prints its conversation id\n"
    "  add CONV USER...           adds members to a group (admins only)\n"
    "  remove CONV USER           removes a member from a group (admins only)\n"
    "  leave CONV                 leaves a group\n"
    "  rename CONV NAME           renames a group (admins only)\n"
    "  conversations              one JSON line per conversation (\"request\": true for a\n"
    "                             message request you have not accepted; group admins)\n"
    "  accept CONV                accepts a message request: the other member of a direct\n"
    "                             conversation, or whoever added you to a group\n"
    "  decline CONV               declines it: leaves the group, or hides the conversation\n"
    "  block USER / unblock USER  no messages, group adds, presence, keys from USER\n"
    "  send CONV TEXT             sends TEXT (\"-\": read stdin); prints the seq once durable\n"
    "  sync [--wait S]            prints new events as JSON lines, oldest first, until caught up\n"
    "                             and then S more seconds of live events and typing (default 0)\n"
    "  history CONV [--limit N] [--before SEQ]\n"
    "                             prints up to N (default 50) messages before SEQ, oldest first\n"
    "  read CONV SEQ              marks CONV read up to SEQ\n"
    "  receipts CONV              one JSON line per member: delivered and read seq\n"
    "  typing CONV [on|off]       tells the other members' online devices (default on)\n"
    "  presence USER... [--watch S]\n"
    "                             one JSON line per user: online, last seen (ms); then S\n"
    "                             more seconds of changes (default 0)\n"
    "  devices [USER]             USER's (default: own) device ids and change counter, as JSON\n"
    "  remove-device ID           removes another device of this user\n"
    "  verify USER [--mark]       safety numbers of USER's devices this device talks to\n"
    "                             end to end, as JSON: compare them with USER out of band\n"
    "  (no command)               interactive chat; /help inside for its commands\n"
    "\n"
    "  --state DIR    device identity and sync position (default $HOME/.parley; created 0700)\n"
    "  --server URL   server to use (default: the one registered with, else " CLI_DEFAULT_SERVER
    ");\n"
    "                 or several, URL1,URL2,... (at most 16 and 511 bytes): one picked at\n"
    "                 random, another after a failure or a lost connection\n"
    "  --tls-ca FILE  wss:// servers: trust the CA certificates (or self-signed\n"
    "                 certificate) in FILE (PEM) instead of the system's\n"
    "  --plaintext    send, sync, history: no end-to-end encryption (by default send\n"
    "                 encrypts, sync decrypts and history shows what this device\n"
    "                 decrypted or sent, kept in DIR/plaintext, 0600); the key store is\n"
    "                 DIR/e2e, made and published at register; a message that cannot\n"
    "                 be decrypted is printed with \"undecryptable\": the reason.\n"
    "                 --e2e: the default, accepted for older scripts\n"
    "  --help         this text; COMMAND --help: that command's usage\n"
    "\n"
    "Users are named by their user names. Exit status: 0 ok, 1 failure, 2 usage.\n";

typedef struct cli_args {
    const char *state;
    const char *server;
    const char *tls_ca;
    const char *pos[MAX_ARGS];
    int n_pos;
    bool have_wait, have_limit, have_before, have_watch;
    bool help;                  /* --help: the command's usage (or the global one), exit 0 */
    bool plaintext;             /* --plaintext: send, sync and history without end-to-end encryption */
    bool mark;                  /* verify --mark: the keys shown are marked verified */
    uint64_t wait_s, limit, before, watch_s;
} cli_args;

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, CLI_NAME ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (try --help)\n");
    return EXIT_USAGE;
}

int cli_parse_u64(const char *s, uint64_t *out) {
    if (!s || *s < '0' || *s > '9') return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end != '\0') return -1;
    *out = v;
    return 0;
}

void cli_report(const char *cmd, const pc_client *c) {
    int st = pc_status(c);
    if (st > 0)
        fprintf(stderr, CLI_NAME ": %s: %s (%d)\n", cmd, pc_error(c), st);
    else
        fprintf(stderr, CLI_NAME ": %s: %s\n", cmd, pc_error(c));
}

/* Options may come before or after the command; "--" ends them so a
 * message may start with "--". Returns 0, or an exit status. */
static int parse_args(int argc, char **argv, cli_args *a) {
    bool opts = true;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (opts && strcmp(s, "--") == 0) {
            opts = false;
            continue;
        }
        /* "-h" only up front: later it may be a message. Which usage to
         * print is decided once the command is known. */
        if (opts && (strcmp(s, "--help") == 0 || (i == 1 && strcmp(s, "-h") == 0))) {
            a->help = true;
            continue;
        }
        if (opts && strcmp(s, "--e2e") == 0) continue;   /* the default now */
        if (opts && strcmp(s, "--plaintext") == 0) {
            a->plaintext = true;
            continue;
        }
        if (opts && strcmp(s, "--mark") == 0) {
            a->mark = true;
            continue;
        }
        if (opts && s[0] == '-' && s[1] == '-') {
            const char *name = s + 2, *val = NULL;
            char namebuf[32];
            const char *eq = strchr(name, '=');
            if (eq) {   /* --opt=value */
                size_t n = (size_t)(eq - name);
                if (n >= sizeof namebuf) return usage_error("unknown option %s", s);
                memcpy(namebuf, name, n);
                namebuf[n] = '\0';
                name = namebuf;
                val = eq + 1;
            } else {
                if (i + 1 >= argc) return usage_error("%s needs a value", s);
                val = argv[++i];
            }
            uint64_t *num = NULL;
            bool *flag = NULL;
            if (strcmp(name, "state") == 0) {
                a->state = val;
            } else if (strcmp(name, "server") == 0) {
                a->server = val;
            } else if (strcmp(name, "tls-ca") == 0) {
                a->tls_ca = val;
            } else if (strcmp(name, "wait") == 0) {
                num = &a->wait_s, flag = &a->have_wait;
            } else if (strcmp(name, "limit") == 0) {
                num = &a->limit, flag = &a->have_limit;
            } else if (strcmp(name, "before") == 0) {
                num = &a->before, flag = &a->have_before;
            } else if (strcmp(name, "watch") == 0) {
                num = &a->watch_s, flag = &a->have_watch;
            } else {
                return usage_error("unknown option %s", s);
            }
            if (num) {
                if (cli_parse_u64(val, num) < 0) return usage_error("bad number: %s", val);
                *flag = true;
            }
            continue;
        }
        if (a->n_pos >= MAX_ARGS) return usage_error("too many arguments%s", "");
        a->pos[a->n_pos++] = s;
    }
    return 0;
}

static bool url_ok(const char *u) {
    if (strlen(u) >= CLI_URL_MAX) return false;
    for (const char *p = u; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) return false;
    return true;
}

pc_client *cli_connect(cli_ctx *ctx, const char *cmd, bool sign_in) {
    pc_options o = {
        .server_url = ctx->server,
        .connect_timeout_ms = 5000,
        .request_timeout_ms = 10000,
        .reconnect_base_ms = 100,
        .reconnect_cap_ms = 5000,
        .max_reconnects = 10,
        .tls_ca_file = ctx->tls_ca,
    };
    pc_client *c = pc_new(&o);
    if (!c) {
        fprintf(stderr, CLI_NAME ": %s: out of memory\n", cmd);
        return NULL;
    }
    if (pc_connect(c) < 0 || (sign_in && pc_sign_in(c, &ctx->ident.id) < 0)) {
        cli_report(cmd, c);
        pc_free(c);
        return NULL;
    }
    return c;
}

int cli_resolve_user(pc_client *c, const char *cmd, const char *name, uint64_t *id) {
    if (pc_lookup_user(c, name, id) == 0) return 0;
    if (pc_status(c) == PARLEY__V1__STATUS__NOT_FOUND)
        fprintf(stderr, CLI_NAME ": %s: no user named \"%s\" (404)\n", cmd, name);
    else
        cli_report(cmd, c);
    return -1;
}

static int need_args(const cli_args *a, int min, int max, const char *synopsis) {
    if (a->n_pos - 1 < min || (max >= 0 && a->n_pos - 1 > max)) {
        fprintf(stderr, CLI_NAME ": usage: " CLI_NAME " %s (try --help)\n", synopsis);
        return -1;
    }
    return 0;
}

static int parse_conv(const char *cmd, const char *s, uint64_t *conv) {
    if (cli_parse_u64(s, conv) == 0 && *conv != 0) return 0;
    fprintf(stderr, CLI_NAME ": %s: not a conversation id: %s\n", cmd, s);
    return -1;
}

/* --------------------------------------------------------- subcommands */

static int cmd_register(cli_ctx *ctx, const cli_args *a, bool device) {
    const char *cmd = device ? "register-device" : "register";
    if (ctx->ident.id.user_id) {
        fprintf(stderr, CLI_NAME ": %s: %s already holds user %" PRIu64 " device %" PRIu32 "\n",
                cmd, ctx->state_dir, ctx->ident.id.user_id, ctx->ident.id.device_id);
        return 1;
    }
    char err[512];
    if (state_lock(ctx->state_dir, err, sizeof err) < 0) {
        fprintf(stderr, CLI_NAME ": %s: %s\n", cmd, err);
        return 1;
    }
    pc_client *c = cli_connect(ctx, cmd, false);
    if (!c) return 1;
    cli_identity id = {0};
    pc_identity_generate(&id.id);
    snprintf(id.server, sizeof id.server, "%s", ctx->server);
    int r = device ? pc_register_device(c, a->pos[1], &id.id)
                   : pc_register_user(c, a->pos[1], &id.id);
    if (r < 0) {
        cli_report(cmd, c);
        pc_free(c);
        return 1;
    }
    if (!device) snprintf(id.name, sizeof id.name, "%s", a->pos[1]);
    /* the key store first: messages sent to this device from now on are
     * encrypted to it (a failure here leaves it to the first send or sync) */
    if (cli_e2e_prepare(ctx, c, cmd) < 0)
        fprintf(stderr, CLI_NAME ": %s: the end-to-end keys are made at the first send or sync instead\n", cmd);
    pc_close(c);
    pc_free(c);
    if (state_save_identity(ctx->state_dir, &id, err, sizeof err) < 0) {
        fprintf(stderr, CLI_NAME ": %s: registered user %" PRIu64 " device %" PRIu32
                        " but could not save it: %s\n", cmd, id.id.user_id, id.id.device_id, err);
        return 1;
    }
    printf("%" PRIu64 "\n", id.id.user_id);
    sodium_memzero(&id, sizeof id);
    return 0;
}

static int cmd_whoami(cli_ctx *ctx) {
    printf("{\"user_id\":%" PRIu64 ",\"device_id\":%" PRIu32 ",\"name\":", ctx->ident.id.user_id,
           ctx->ident.id.device_id);
    json_print_string(stdout, ctx->ident.name, strlen(ctx->ident.name));
    fputs(",\"server\":", stdout);
    json_print_string(stdout, ctx->server, strlen(ctx->server));
    fputs("}\n", stdout);
    return 0;
}

/* mqtt-password: the client id and a password signed now (parley_mqtt.h) */
static int cmd_mqtt_password(cli_ctx *ctx) {
    char client_id[PC_MQTT_CLIENT_ID_MAX], password[PC_MQTT_PASSWORD_MAX];
    if (pc_mqtt_client_id(&ctx->ident.id, client_id, sizeof client_id) < 0 ||
        pc_mqtt_password(&ctx->ident.id, pc_mqtt_now_ms(), password, sizeof password) < 0) {
        fprintf(stderr, CLI_NAME ": mqtt-password: cannot format the password\n");
        return 1;
    }
    printf("%s\n%s\n", client_id, password);
    return 0;
}

static int cmd_link(cli_ctx *ctx) {
    char token[256];
    uint64_t exp = 0;
    if (pc_create_link_token(ctx->c, token, sizeof token, &exp) < 0) {
        cli_report("link", ctx->c);
        return 1;
    }
    printf("%s\n", token);
    return 0;
}

static int cmd_direct(cli_ctx *ctx, const cli_args *a) {
    uint64_t peer, conv;
    if (cli_resolve_user(ctx->c, "direct", a->pos[1], &peer) < 0) return 1;
    if (pc_open_direct(ctx->c, peer, &conv) < 0) {
        cli_report("direct", ctx->c);
        return 1;
    }
    printf("%" PRIu64 "\n", conv);
    return 0;
}

/* Resolves names[0..n) into a malloc'd id array. NULL on failure (reported). */
static uint64_t *resolve_all(pc_client *c, const char *cmd, const char *const *names, int n) {
    uint64_t *ids = calloc(n > 0 ? (size_t)n : 1, sizeof *ids);
    if (!ids) {
        fprintf(stderr, CLI_NAME ": %s: out of memory\n", cmd);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (cli_resolve_user(c, cmd, names[i], &ids[i]) < 0) {
            free(ids);
            return NULL;
        }
    }
    return ids;
}

static int cmd_group(cli_ctx *ctx, const cli_args *a) {
    int n = a->n_pos - 2;
    uint64_t *ids = resolve_all(ctx->c, "group", a->pos + 2, n);
    if (!ids) return 1;
    uint64_t conv;
    int r = pc_create_group(ctx->c, a->pos[1], ids, (size_t)n, &conv);
    free(ids);
    if (r < 0) {
        cli_report("group", ctx->c);
        return 1;
    }
    printf("%" PRIu64 "\n", conv);
    return 0;
}

static int cmd_add(cli_ctx *ctx, const cli_args *a) {
    uint64_t conv;
    if (parse_conv("add", a->pos[1], &conv) < 0) return EXIT_USAGE;
    int n = a->n_pos - 2;
    uint64_t *ids = resolve_all(ctx->c, "add", a->pos + 2, n);
    if (!ids) return 1;
    int r = pc_add_members(ctx->c, conv, ids, (size_t)n);
    free(ids);
    if (r < 0) {
        cli_report("add", ctx->c);
        return 1;
    }
    return 0;
}

static int cmd_remove(cli_ctx *ctx, const cli_args *a, bool self) {
    const char *cmd = self ? "leave" : "remove";
    uint64_t conv, user = ctx->ident.id.user_id;
    if (parse_conv(cmd, a->pos[1], &conv) < 0) return EXIT_USAGE;
    if (!self && cli_resolve_user(ctx->c, cmd, a->pos[2], &user) < 0) return 1;
    if (pc_remove_member(ctx->c, conv, user) < 0) {
        cli_report(cmd, ctx->c);
        return 1;
    }
    return 0;
}

static int cmd_conversations(cli_ctx *ctx) {
    Parley__V1__ConversationList *l;
    if (pc_list_conversations(ctx->c, &l) < 0) {
        cli_report("conversations", ctx->c);
        return 1;
    }
    for (size_t i = 0; i < l->n_conversations; i++)
        json_print_conversation(stdout, l->conversations[i]);
    parley__v1__conversation_list__free_unpacked(l, NULL);
    return 0;
}

/* Reads all of stdin (up to MAX_TEXT bytes) for `send CONV -`. */
static char *read_stdin_text(size_t *len) {
    char *buf = malloc(MAX_TEXT + 2);
    if (!buf) return NULL;
    size_t n = fread(buf, 1, MAX_TEXT + 1, stdin);
    if (n > MAX_TEXT) {
        free(buf);
        errno = EFBIG;
        return NULL;
    }
    if (n > 0 && buf[n - 1] == '\n') n--;   /* the line end of `echo`, not part of the text */
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int cmd_send(cli_ctx *ctx, const cli_args *a) {
    uint64_t conv, seq;
    if (parse_conv("send", a->pos[1], &conv) < 0) return EXIT_USAGE;
    const char *text = a->pos[2];
    size_t len = strlen(text);
    char *owned = NULL;
    if (strcmp(text, "-") == 0) {
        owned = read_stdin_text(&len);
        if (!owned) {
            fprintf(stderr, CLI_NAME ": send: stdin: %s\n",
                    errno == EFBIG ? "message over 65536 bytes" : strerror(errno));
            return 1;
        }
        text = owned;
    }
    if (!a->plaintext) {
        int rc = cli_e2e_send(ctx, conv, text, len);
        free(owned);
        return rc;
    }
    pc_send_args s = {.conversation_id = conv, .type = PARLEY__V1__MESSAGE_TYPE__TEXT,
                      .body = text, .body_len = len};
    int r = pc_send(ctx->c, &s, &seq, NULL, NULL);
    free(owned);
    if (r < 0) {
        cli_report("send", ctx->c);
        return 1;
    }
    printf("%" PRIu64 "\n", seq);
    return 0;
}

static int cmd_read(cli_ctx *ctx, const cli_args *a) {
    uint64_t conv, seq;
    if (parse_conv("read", a->pos[1], &conv) < 0) return EXIT_USAGE;
    if (cli_parse_u64(a->pos[2], &seq) < 0) {
        fprintf(stderr, CLI_NAME ": read: not a seq: %s\n", a->pos[2]);
        return EXIT_USAGE;
    }
    if (pc_mark_read(ctx->c, conv, seq) < 0) {
        cli_report("read", ctx->c);
        return 1;
    }
    return 0;
}

static int cmd_history(cli_ctx *ctx, const cli_args *a) {
    uint64_t conv;
    if (parse_conv("history", a->pos[1], &conv) < 0) return EXIT_USAGE;
    uint64_t want = a->have_limit ? a->limit : 50;
    if (want == 0 || want > HISTORY_MAX) {
        fprintf(stderr, CLI_NAME ": history: --limit must be 1..%d\n", HISTORY_MAX);
        return EXIT_USAGE;
    }
    /* pages come newest-first page by page (each oldest-first inside);
     * collect them, then print everything oldest first */
    Parley__V1__HistoryPage **pages = NULL;
    size_t n_pages = 0, got = 0;
    uint64_t before = a->have_before ? a->before : 0;
    int rc = 0;
    while (got < want) {
        uint64_t left = want - got;
        Parley__V1__HistoryPage *p;
        if (pc_history(ctx->c, conv, before, left > HISTORY_PAGE ? HISTORY_PAGE : (uint32_t)left,
                       &p) < 0) {
            cli_report("history", ctx->c);
            rc = 1;
            break;
        }
        Parley__V1__HistoryPage **np = realloc(pages, (n_pages + 1) * sizeof *np);
        if (!np) {
            parley__v1__history_page__free_unpacked(p, NULL);
            fprintf(stderr, CLI_NAME ": history: out of memory\n");
            rc = 1;
            break;
        }
        pages = np;
        pages[n_pages++] = p;
        got += p->n_messages;
        if (!p->has_more || p->n_messages == 0) break;
        uint64_t oldest = p->messages[0]->seq;
        if (oldest <= 1 || (before && oldest >= before)) break;   /* no progress: stop */
        before = oldest;
    }
    pt_store kept = {0};
    char err[512];
    if (rc == 0 && !a->plaintext && pt_store_load(ctx->state_dir, &kept, err, sizeof err) < 0) {
        fprintf(stderr, CLI_NAME ": history: %s\n", err);
        rc = 1;
    }
    if (rc == 0) {
        /* a page may hold more than asked; print only the newest `want` */
        size_t skip = got > want ? got - want : 0;
        for (size_t i = n_pages; i-- > 0;) {
            for (size_t j = 0; j < pages[i]->n_messages; j++) {
                if (skip) {
                    skip--;
                    continue;
                }
                if (a->plaintext)
                    json_print_message(stdout, 0, pages[i]->messages[j]);
                else
                    cli_e2e_print_history(&kept, pages[i]->messages[j]);
            }
        }
    }
    pt_store_free(&kept);
    for (size_t i = 0; i < n_pages; i++) parley__v1__history_page__free_unpacked(pages[i], NULL);
    free(pages);
    return rc;
}

/* ------------------------------------------------------------------ sync */

static volatile sig_atomic_t stop_requested;
static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* Typing indicators are live only (never stored, never in the cursor): one
 * JSON line each, type "typing", between the event lines. */
static void print_typing(void *ud, const Parley__V1__TypingIndicator *t) {
    (void)ud;
    json_print_typing(stdout, t);
    fflush(stdout);
}

static void print_event(void *ud, uint64_t user_seq, const Parley__V1__Message *m) {
    if (ud)
        cli_e2e_sync_event(ud, user_seq, m);   /* decrypted, or held until its key comes */
    else
        json_print_message(stdout, user_seq, m);
    /* each line leaves as it is handed out: the ack (and the saved cursor)
     * must never run ahead of what the reader has seen */
    fflush(stdout);
}

static int cmd_sync(cli_ctx *ctx, const cli_args *a, pc_client *c) {
    if (a->wait_s > SYNC_WAIT_MAX_S) {
        fprintf(stderr, CLI_NAME ": sync: --wait too long\n");
        return EXIT_USAGE;
    }
    char err[512];
    cli_sync_state st;
    if (state_load_sync(ctx->state_dir, &st, err, sizeof err) < 0) {
        fprintf(stderr, CLI_NAME ": sync: %s\n", err);
        return 1;
    }
    pc_set_cursor(c, st.cursor);
    for (size_t i = 0; i < st.n_seen; i++) pc_set_seen(c, st.seen[i].conv, st.seen[i].seq);
    state_sync_free(&st);

    struct sigaction sa = {.sa_handler = on_stop_signal};   /* no SA_RESTART: wake poll */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    cli_e2e_sync *e2e = NULL;
    if (!(e2e = cli_e2e_sync_begin(ctx, c, a->plaintext))) return 1;
    pc_on_event(c, print_event, e2e);
    pc_on_typing(c, print_typing, NULL);
    int rc = 0;
    if (pc_start_sync(c) < 0) {
        cli_report("sync", c);
        rc = 1;
    }
    int64_t idle_since = 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    idle_since = now;
    int64_t live_until = -1;
    while (rc == 0 && !stop_requested) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        if (live_until < 0 && pc_sync_done(c)) live_until = now + (int64_t)a->wait_s * 1000;
        if (live_until >= 0 && now >= live_until) break;
        if (live_until < 0 && now - idle_since > SYNC_IDLE_MS) {
            fprintf(stderr, CLI_NAME ": sync: server sent nothing for %d s before catching up\n",
                    SYNC_IDLE_MS / 1000);
            rc = 1;
            break;
        }
        int slice = 200;
        if (live_until >= 0 && live_until - now < slice) slice = (int)(live_until - now);
        int n = pc_poll(c, slice);
        if (n < 0) {
            cli_report("sync", c);
            rc = 1;
        } else if (n > 0) {
            idle_since = now;
        }
        if (e2e) cli_e2e_sync_retry(e2e);
    }
    if (e2e) {
        if (cli_e2e_sync_end(e2e) != 0) rc = 1;
        pc_on_event(c, print_event, NULL);   /* e2e is freed */
    }
    /* whatever happened, what was printed is acked and remembered */
    pc_flush_acks(c);
    if (state_save_sync(ctx->state_dir, c, err, sizeof err) < 0) {
        fprintf(stderr, CLI_NAME ": sync: %s\n", err);
        rc = 1;
    }
    return rc;
}

/* ------------------------------------------------------------ real time */

/* Checks the arguments of the real-time subcommands and runs them
 * (realtime_cmds.c). */
static int cmd_realtime(cli_ctx *ctx, const cli_args *a) {
    const char *cmd = a->pos[0];
    uint64_t n;
    if (strcmp(cmd, "receipts") == 0 || strcmp(cmd, "typing") == 0) {
        if (parse_conv(cmd, a->pos[1], &n) < 0) return EXIT_USAGE;
        if (cmd[0] == 'r') return cli_cmd_receipts(ctx, n);
        bool on = true;
        if (a->n_pos > 2) {
            if (strcmp(a->pos[2], "on") != 0 && strcmp(a->pos[2], "off") != 0)
                return usage_error("typing: on or off, not %s", a->pos[2]);
            on = strcmp(a->pos[2], "on") == 0;
        }
        return cli_cmd_typing(ctx, n, on);
    }
    if (strcmp(cmd, "presence") == 0) return cli_cmd_presence(ctx, a->pos + 1, a->n_pos - 1, a->watch_s);
    if (strcmp(cmd, "devices") == 0) return cli_cmd_devices(ctx, a->n_pos > 1 ? a->pos[1] : NULL);
    if (strcmp(cmd, "verify") == 0) return cli_e2e_verify(ctx, a->pos[1], a->mark);
    if (cli_parse_u64(a->pos[1], &n) < 0 || n == 0 || n > UINT32_MAX) {
        fprintf(stderr, CLI_NAME ": remove-device: not a device id: %s\n", a->pos[1]);
        return EXIT_USAGE;
    }
    return cli_cmd_remove_device(ctx, (uint32_t)n);
}

/* ------------------------------------------------------------------ main */

typedef enum { NEEDS_NOTHING, NEEDS_IDENTITY, NEEDS_CONNECTION } needs;

typedef struct command {
    const char *name;
    needs need;
    int min_args, max_args;     /* after the command name; -1: no maximum */
    const char *synopsis;
} command;

static const command COMMANDS[] = {
    {"register", NEEDS_NOTHING, 1, 1, "register NAME"},
    {"register-device", NEEDS_NOTHING, 1, 1, "register-device TOKEN"},
    {"whoami", NEEDS_IDENTITY, 0, 0, "whoami"},
    {"mqtt-password", NEEDS_IDENTITY, 0, 0, "mqtt-password"},
    {"link", NEEDS_CONNECTION, 0, 0, "link"},
    {"direct", NEEDS_CONNECTION, 1, 1, "direct USER"},
    {"group", NEEDS_CONNECTION, 1, -1, "group NAME [USER...]"},
    {"add", NEEDS_CONNECTION, 2, -1, "add CONV USER..."},
    {"remove", NEEDS_CONNECTION, 2, 2, "remove CONV USER"},
    {"leave", NEEDS_CONNECTION, 1, 1, "leave CONV"},
    {"rename", NEEDS_CONNECTION, 2, 2, "rename CONV NAME"},
    {"accept", NEEDS_CONNECTION, 1, 1, "accept CONV"},
    {"decline", NEEDS_CONNECTION, 1, 1, "decline CONV"},
    {"block", NEEDS_CONNECTION, 1, 1, "block USER"},
    {"unblock", NEEDS_CONNECTION, 1, 1, "unblock USER"},
    {"conversations", NEEDS_CONNECTION, 0, 0, "conversations"},
    {"send", NEEDS_CONNECTION, 2, 2, "send CONV TEXT"},
    {"sync", NEEDS_CONNECTION, 0, 0, "sync [--wait S]"},
    {"history", NEEDS_CONNECTION, 1, 1, "history CONV [--limit N] [--before SEQ]"},
    {"read", NEEDS_CONNECTION, 2, 2, "read CONV SEQ"},
    {"receipts", NEEDS_CONNECTION, 1, 1, "receipts CONV"},
    {"typing", NEEDS_CONNECTION, 1, 2, "typing CONV [on|off]"},
    {"presence", NEEDS_CONNECTION, 1, -1, "presence USER... [--watch S]"},
    {"devices", NEEDS_CONNECTION, 0, 1, "devices [USER]"},
    {"verify", NEEDS_CONNECTION, 1, 1, "verify USER [--mark]"},
    {"remove-device", NEEDS_CONNECTION, 1, 1, "remove-device ID"},
};

/* What `COMMAND --help` prints under the synopsis (a command missing here
 * prints its synopsis alone). */
static const struct command_help {
    const char *name, *text;
} COMMAND_HELP[] = {
    {"register",
     "Creates user NAME (1..32 of a-z 0-9 _ . -) and its first device, saves the\n"
     "device's keys in the --state directory and prints the user id."},
    {"register-device",
     "Adds this --state directory as a further device of the user whose device\n"
     "made TOKEN (with `link`), and prints the user id."},
    {"whoami",
     "Prints this device's identity as one JSON line (no server needed)."},
    {"mqtt-password",
     "Prints two lines for an MQTT client of this device (no server needed): the\n"
     "client id \"USER.DEVICE\" (also the user name) and a password \"TS.SIG\": TS the\n"
     "time now in ms since the epoch, SIG the device key's Ed25519 signature over\n"
     "\"parley.v1 mqtt password\", TS (8 bytes big-endian) and the client id, in\n"
     "unpadded base64url. The server takes a password within 60 s of its clock and\n"
     "only once: make a fresh one for each connection. For example\n"
     "  mosquitto_sub -V mqttv311 -i USER.DEVICE -u USER.DEVICE -P TS.SIG -c -q 1 -t p/USER.DEVICE/ev"},
    {"link",
     "Prints a short-lived single-use token for `register-device` on a new device."},
    {"direct",
     "Prints the id of the 1:1 conversation with USER (the same id every time)."},
    {"group",
     "Creates a group named NAME with you and the USERs as members; prints its id."},
    {"add",
     "Adds USERs to group CONV."},
    {"remove",
     "Removes USER from group CONV."},
    {"leave",
     "Leaves group CONV."},
    {"conversations",
     "One JSON line per conversation: id, kind, name, last_seq, read_seq, unread, members."},
    {"send",
     "Sends TEXT (\"-\": all of stdin, up to 65536 bytes) to CONV and prints its seq\n"
     "once the server has made it durable.\n"
     "Encrypted end to end by default (at most 65447 bytes): the server stores only\n"
     "ciphertext; every member's devices get this device's sender key first; the\n"
     "text is kept in the state directory (file plaintext, 0600) for history.\n"
     "--plaintext: sent as it is."},
    {"sync",
     "Prints every new event as a JSON line, oldest first, until caught up, then S\n"
     "more seconds of live events and typing indicators (\"type\":\"typing\"; default\n"
     "0). Advances this device's cursor past what it printed.\n"
     "Decrypts end-to-end encrypted messages (and keeps the texts for history); one\n"
     "that cannot be decrypted is printed with \"undecryptable\": the reason.\n"
     "--plaintext: bodies printed as they are (sender keys are still kept)."},
    {"history",
     "Prints up to N (default 50) messages of CONV before SEQ (default: the newest),\n"
     "oldest first, as JSON lines. A text shows what this device decrypted or sent\n"
     "(its plaintext store: a message key is used once, so the server's copy cannot\n"
     "be decrypted again); others are \"undecryptable\" with the reason.\n"
     "--plaintext: bodies as the server holds them."},
    {"read",
     "Marks CONV read up to SEQ (a read receipt to the other members)."},
    {"receipts",
     "One JSON line per member of CONV: delivered_seq and read_seq."},
    {"typing",
     "Tells the other members' online devices that you are typing (default on) or\n"
     "stopped."},
    {"presence",
     "One JSON line per user: online and last seen (ms since the epoch); then S more\n"
     "seconds of changes (default 0)."},
    {"verify",
     "Prints, for each device of USER this device has an end-to-end session with\n"
     "(after an encrypted message either way), a JSON line {user, device,\n"
     "safety_number, verified}: 60 digits from both devices' identity keys, the same\n"
     "on both sides. Compare them with USER in person or over another channel: if\n"
     "they differ, someone is in the middle.\n"
     "--mark: the keys shown are marked verified (state file verified). From then\n"
     "on send (on stderr) and sync (on stdout) print a JSON line\n"
     "{\"warning\":\"identity_changed\", user, device, reason} for each device of USER\n"
     "whose key is not marked, until you verify and mark again."},
    {"devices",
     "USER's (default: your own) device ids and change counter, as one JSON line."},
    {"remove-device",
     "Removes another device of your user (not this one)."},
};

int main(int argc, char **argv) {
    cli_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    if (sodium_init() < 0) {
        fprintf(stderr, CLI_NAME ": cannot initialise libsodium\n");
        return 1;
    }

    const char *cmd = a.n_pos > 0 ? a.pos[0] : NULL;
    const command *cm = NULL;
    for (size_t i = 0; cmd && i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(cmd, COMMANDS[i].name) == 0) cm = &COMMANDS[i];
    if (cmd && !cm) return usage_error("unknown command %s", cmd);
    if (a.help) {
        if (!cm) {
            fputs(USAGE, stdout);
        } else {
            printf("usage: " CLI_NAME " [--state DIR] [--server URL] [--tls-ca FILE] %s\n",
                   cm->synopsis);
            for (size_t i = 0; i < sizeof COMMAND_HELP / sizeof COMMAND_HELP[0]; i++)
                if (strcmp(COMMAND_HELP[i].name, cm->name) == 0) printf("\n%s\n", COMMAND_HELP[i].text);
        }
        return 0;
    }
    if (cm && need_args(&a, cm->min_args, cm->max_args, cm->synopsis) < 0) return EXIT_USAGE;
    if (!cm || strcmp(cm->name, "sync") != 0) {
        if (a.have_wait) return usage_error("--wait is for sync%s", "");
    }
    if (a.plaintext && (!cm || (strcmp(cm->name, "sync") != 0 && strcmp(cm->name, "send") != 0 &&
                                strcmp(cm->name, "history") != 0)))
        return usage_error("--plaintext is for send, sync and history%s", "");
    if (a.mark && (!cm || strcmp(cm->name, "verify") != 0)) return usage_error("--mark is for verify%s", "");
    if (!cm || strcmp(cm->name, "history") != 0) {
        if (a.have_limit || a.have_before) return usage_error("--limit/--before are for history%s", "");
    }
    if (!cm || strcmp(cm->name, "presence") != 0) {
        if (a.have_watch) return usage_error("--watch is for presence%s", "");
    }
    if (a.have_watch && a.watch_s > SYNC_WAIT_MAX_S) return usage_error("--watch too long%s", "");
    const char *what = cmd ? cmd : "chat";

    cli_ctx ctx = {0};
    char default_state[1024];
    if (!a.state) {
        const char *home = getenv("HOME");
        if (!home || !*home) return usage_error("--state DIR is needed (no $HOME)%s", "");
        snprintf(default_state, sizeof default_state, "%s/.parley", home);
        a.state = default_state;
    }
    ctx.state_dir = a.state;
    if (state_ensure_dir(ctx.state_dir) < 0) {
        fprintf(stderr, CLI_NAME ": %s: %s: %s\n", what, ctx.state_dir, strerror(errno));
        return 1;
    }
    char err[512];
    int have_id = state_load_identity(ctx.state_dir, &ctx.ident, err, sizeof err);
    if (have_id < 0) {
        fprintf(stderr, CLI_NAME ": %s: %s\n", what, err);
        return 1;
    }
    const char *server = a.server ? a.server
                         : (have_id && ctx.ident.server[0]) ? ctx.ident.server
                                                            : CLI_DEFAULT_SERVER;
    if (!url_ok(server)) return usage_error("bad server URL: %s", server);
    snprintf(ctx.server, sizeof ctx.server, "%s", server);
    ctx.tls_ca = a.tls_ca;

    if (cm && cm->need == NEEDS_NOTHING) {
        rc = cmd_register(&ctx, &a, strcmp(cm->name, "register-device") == 0);
        sodium_memzero(&ctx.ident, sizeof ctx.ident);
        return rc;
    }
    if (!have_id) {
        fprintf(stderr, CLI_NAME ": %s: no identity in %s: run `" CLI_NAME
                        " --state %s register NAME` (or register-device TOKEN) first\n",
                what, ctx.state_dir, ctx.state_dir);
        return 1;
    }
    if (cm && cm->need == NEEDS_IDENTITY) {
        rc = strcmp(cm->name, "mqtt-password") == 0 ? cmd_mqtt_password(&ctx) : cmd_whoami(&ctx);
        sodium_memzero(&ctx.ident, sizeof ctx.ident);
        return rc;
    }

    bool locks = !cm || strcmp(cm->name, "sync") == 0;
    if (locks && state_lock(ctx.state_dir, err, sizeof err) < 0) {
        fprintf(stderr, CLI_NAME ": %s: %s\n", what, err);
        return 1;
    }
    ctx.c = cli_connect(&ctx, what, true);
    if (!ctx.c) return 1;
    if (!cm) {
        rc = cli_interactive(&ctx);
    } else if (strcmp(cmd, "link") == 0) {
        rc = cmd_link(&ctx);
    } else if (strcmp(cmd, "direct") == 0) {
        rc = cmd_direct(&ctx, &a);
    } else if (strcmp(cmd, "group") == 0) {
        rc = cmd_group(&ctx, &a);
    } else if (strcmp(cmd, "add") == 0) {
        rc = cmd_add(&ctx, &a);
    } else if (strcmp(cmd, "remove") == 0) {
        rc = cmd_remove(&ctx, &a, false);
    } else if (strcmp(cmd, "leave") == 0) {
        rc = cmd_remove(&ctx, &a, true);
    } else if (strcmp(cmd, "conversations") == 0) {
        rc = cmd_conversations(&ctx);
    } else if (strcmp(cmd, "rename") == 0 || strcmp(cmd, "accept") == 0 || strcmp(cmd, "decline") == 0 ||
               strcmp(cmd, "block") == 0 || strcmp(cmd, "unblock") == 0) {
        rc = cli_cmd_consent(&ctx, cmd, a.pos[1], a.n_pos > 2 ? a.pos[2] : NULL);
    } else if (strcmp(cmd, "send") == 0) {
        rc = cmd_send(&ctx, &a);
    } else if (strcmp(cmd, "sync") == 0) {
        rc = cmd_sync(&ctx, &a, ctx.c);
    } else if (strcmp(cmd, "history") == 0) {
        rc = cmd_history(&ctx, &a);
    } else if (strcmp(cmd, "read") == 0) {
        rc = cmd_read(&ctx, &a);
    } else {
        rc = cmd_realtime(&ctx, &a);
    }
    pc_close(ctx.c);
    pc_free(ctx.c);
    sodium_memzero(&ctx.ident, sizeof ctx.ident);
    if (fflush(stdout) != 0 && rc == 0) {
        fprintf(stderr, CLI_NAME ": %s: stdout: %s\n", what, strerror(errno));
        rc = 1;
    }
    return rc;
}
