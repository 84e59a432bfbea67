/* interactive.c -- parley-cli with no subcommand: a line-oriented chat.
 * One poll() over stdin and the socket; incoming events print as they come,
 * plain lines go to the selected conversation, "/" lines are commands.
 * Works the same on a pipe: commands run in order and EOF ends the session.
 *
 * Everything printed from the network is made terminal-safe first: a
 * message must not be able to send escape sequences to the reader's
 * terminal. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "net/ws.h"

enum {
    LINE_CAP = 65536 + 256,     /* a full-size message plus a command prefix */
    NAME_CACHE = 256,
    SAVE_EVERY_MS = 1000,       /* sync state save, at most this often while events flow */
    HISTORY_DEFAULT = 20,
    MAX_GROUP_USERS = 64,
};

typedef struct repl {
    cli_ctx *ctx;
    pc_client *c;
    uint64_t conv;                      /* selected conversation, 0: none */
    struct {
        uint64_t id;
        char name[CLI_NAME_MAX];
    } names[NAME_CACHE];
    size_t n_names, next_evict;
    bool dirty;                         /* events since the last state save */
    bool quit;
    char line[LINE_CAP];
    size_t line_len;
    bool discarding;                    /* inside a line that was too long */
    cli_e2e_sync *e2e;                  /* key store and plaintext store: texts are end-to-end encrypted */
} repl;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ----------------------------------------------------------- display */

static void remember_name(repl *r, uint64_t id, const char *name) {
    for (size_t i = 0; i < r->n_names; i++) {
        if (r->names[i].id == id) {
            snprintf(r->names[i].name, sizeof r->names[i].name, "%s", name);
            return;
        }
    }
    size_t slot = r->n_names < NAME_CACHE ? r->n_names++ : r->next_evict++ % NAME_CACHE;
    r->names[slot].id = id;
    snprintf(r->names[slot].name, sizeof r->names[slot].name, "%s", name);
}

static void print_user(repl *r, uint64_t id) {
    if (id == r->ctx->ident.id.user_id) {
        fputs("you", stdout);
        return;
    }
    for (size_t i = 0; i < r->n_names; i++) {
        if (r->names[i].id == id) {
            fputs(r->names[i].name, stdout);
            return;
        }
    }
    printf("user %" PRIu64, id);
}

/* Prints text so a terminal shows it and nothing else: control characters
 * (C0, DEL, and the C1 range that UTF-8 can encode) become \xNN / \u00NN,
 * invalid UTF-8 becomes U+FFFD. */
static void print_safe(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t ch = s[i];
        if (ch < 0x80) {
            if (ch < 0x20 || ch == 0x7f)
                printf("\\x%02x", ch);
            else
                putchar(ch);
            i++;
            continue;
        }
        size_t n = (ch & 0xE0) == 0xC0 ? 2 : (ch & 0xF0) == 0xE0 ? 3 : (ch & 0xF8) == 0xF0 ? 4 : 0;
        if (n == 0 || n > len - i || !ws_utf8_valid(s + i, n)) {
            fputs("\xEF\xBF\xBD", stdout);
            i++;
            continue;
        }
        if (n == 2 && ch == 0xC2 && s[i + 1] < 0xA0) {
            printf("\\u%04x", s[i + 1]);   /* C1 control, e.g. CSI */
        } else {
            fwrite(s + i, 1, n, stdout);
        }
        i += n;
    }
}

static void show_message(repl *r, const Parley__V1__Message *m) {
    printf("[%" PRIu64 " #%" PRIu64 "] ", m->conversation_id, m->seq);
    switch (m->type) {
    case PARLEY__V1__MESSAGE_TYPE__TEXT: {
        print_user(r, m->sender_user_id);
        fputs(": ", stdout);
        uint8_t *text = NULL;
        size_t len = 0;
        const char *why = "";
        if (cli_e2e_reveal(r->e2e, m, &text, &len, &why)) {
            print_safe(text, len);
            sodium_memzero(text, len);
        } else {
            printf("<undecryptable: %s>", why);
        }
        free(text);
        break;
    }
    case PARLEY__V1__MESSAGE_TYPE__MEDIA:
        print_user(r, m->sender_user_id);
        fputs(": <media ", stdout);
        print_safe((const uint8_t *)(m->mime_type ? m->mime_type : ""),
                   m->mime_type ? strlen(m->mime_type) : 0);
        printf(", %" PRIu64 " bytes>", m->size);
        break;
    case PARLEY__V1__MESSAGE_TYPE__REACTION:
        print_user(r, m->sender_user_id);
        fputs(" reacted ", stdout);
        print_safe(m->body.data, m->body.len);
        printf(" to #%" PRIu64, m->ref_seq);
        break;
    case PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP: {
        const Parley__V1__Membership *ms = m->membership;
        fputs("* ", stdout);
        print_user(r, m->sender_user_id);
        printf(" %s", json_action_name(ms ? (int)ms->action : 0));
        for (size_t i = 0; ms && i < ms->n_user_ids; i++) {
            fputs(i ? ", " : ": ", stdout);
            print_user(r, ms->user_ids[i]);
        }
        if (ms && ms->name && ms->name[0]) {
            fputs(" (", stdout);
            print_safe((const uint8_t *)ms->name, strlen(ms->name));
            fputc(')', stdout);
        }
        break;
    }
    default:
        print_user(r, m->sender_user_id);
        printf(": <message of type %d>", (int)m->type);
    }
    putchar('\n');
    fflush(stdout);
}

static void on_event(void *ud, uint64_t user_seq, const Parley__V1__Message *m) {
    (void)user_seq;
    repl *r = ud;
    show_message(r, m);
    r->dirty = true;
}

/* Typing indicators show as a status line of their own ("~ "), never
 * stored: who started or stopped typing in which conversation. */
static void on_typing(void *ud, const Parley__V1__TypingIndicator *t) {
    repl *r = ud;
    fputs("~ ", stdout);
    print_user(r, t->user_id);
    printf(" %s in %" PRIu64 "\n", t->typing ? "is typing" : "stopped typing", t->conversation_id);
    fflush(stdout);
}

static void save_state(repl *r) {
    char err[512];
    if (state_save_sync(r->ctx->state_dir, r->c, err, sizeof err) < 0)
        printf("! could not save sync state: %s\n", err);
    r->dirty = false;
}

/* ---------------------------------------------------------- commands */

static void report(repl *r, const char *what) {
    int st = pc_status(r->c);
    if (st > 0)
        printf("! %s: %s (%d)\n", what, pc_error(r->c), st);
    else
        printf("! %s: %s\n", what, pc_error(r->c));
}

static int resolve(repl *r, const char *name, uint64_t *id) {
    if (pc_lookup_user(r->c, name, id) < 0) {
        if (pc_status(r->c) == PARLEY__V1__STATUS__NOT_FOUND)
            printf("! no user named \"%s\"\n", name);
        else
            report(r, name);
        return -1;
    }
    remember_name(r, *id, name);
    return 0;
}

/* Splits s in place into at most max blank-separated words. */
static int split_words(char *s, char **w, int max) {
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(s, " \t", &save); t && n < max; t = strtok_r(NULL, " \t", &save))
        w[n++] = t;
    return n;
}

static void cmd_help(void) {
    puts("* commands:\n"
         "*   /to CONV               talk in conversation CONV\n"
         "*   /direct USER           open (and select) the 1:1 conversation with USER\n"
         "*   /group NAME USER...    create (and select) a group\n"
         "*   /list                  your conversations\n"
         "*   /history [N]           the last N messages of the selected conversation\n"
         "*   /read                  mark the selected conversation read\n"
         "*   /quit                  leave (EOF does too)\n"
         "* any other line is sent to the selected conversation");
}

static void cmd_list(repl *r) {
    Parley__V1__ConversationList *l;
    if (pc_list_conversations(r->c, &l) < 0) {
        report(r, "list");
        return;
    }
    if (l->n_conversations == 0) puts("* no conversations yet: /direct USER or /group NAME USER...");
    for (size_t i = 0; i < l->n_conversations; i++) {
        const Parley__V1__ConversationSummary *s = l->conversations[i];
        printf("* %s%" PRIu64 " %s ", s->conversation_id == r->conv ? ">" : " ",
               s->conversation_id, json_kind_name((int)s->kind));
        if (s->name && s->name[0]) {
            print_safe((const uint8_t *)s->name, strlen(s->name));
            putchar(' ');
        }
        printf("(%" PRIu64 " messages, %" PRIu64 " unread) with ", s->last_seq, s->unread);
        for (size_t j = 0, shown = 0; j < s->n_member_user_ids; j++) {
            if (s->member_user_ids[j] == r->ctx->ident.id.user_id) continue;
            if (shown++) fputs(", ", stdout);
            print_user(r, s->member_user_ids[j]);
        }
        putchar('\n');
    }
    parley__v1__conversation_list__free_unpacked(l, NULL);
}

static void cmd_history(repl *r, const char *arg) {
    uint64_t n = HISTORY_DEFAULT;
    if (arg && (cli_parse_u64(arg, &n) < 0 || n == 0 || n > 200)) {
        puts("! usage: /history [N], N in 1..200");
        return;
    }
    Parley__V1__HistoryPage *p;
    if (pc_history(r->c, r->conv, 0, (uint32_t)n, &p) < 0) {
        report(r, "history");
        return;
    }
    for (size_t i = 0; i < p->n_messages; i++) show_message(r, p->messages[i]);
    parley__v1__history_page__free_unpacked(p, NULL);
}

static void cmd_read(repl *r) {
    Parley__V1__HistoryPage *p;
    if (pc_history(r->c, r->conv, 0, 1, &p) < 0) {
        report(r, "read");
        return;
    }
    uint64_t last = p->n_messages ? p->messages[p->n_messages - 1]->seq : 0;
    parley__v1__history_page__free_unpacked(p, NULL);
    if (last && pc_mark_read(r->c, r->conv, last) < 0) report(r, "read");
}

static void send_line(repl *r, const char *text, size_t len) {
    if (r->conv == 0) {
        puts("! no conversation selected: /to CONV, /direct USER or /list");
        return;
    }
    uint64_t seq;
    if (cli_e2e_send_in(r->e2e, r->conv, text, len, &seq) < 0)
        report(r, "send");
    else
        printf("* sent #%" PRIu64 "\n", seq);
}

static void handle_line(repl *r, char *line, size_t len) {
    if (len > 0 && line[len - 1] == '\r') line[--len] = '\0';
    if (len == 0) return;
    if (line[0] != '/' || (len > 1 && line[1] == '/')) {
        /* "//text" sends "/text" */
        size_t skip = line[0] == '/' ? 1 : 0;
        send_line(r, line + skip, len - skip);
        fflush(stdout);
        return;
    }
    char *w[2 + MAX_GROUP_USERS];
    int n = split_words(line, w, (int)(sizeof w / sizeof w[0]));
    const char *cmd = w[0];
    uint64_t id;
    if (strcmp(cmd, "/quit") == 0 || strcmp(cmd, "/exit") == 0) {
        r->quit = true;
    } else if (strcmp(cmd, "/help") == 0) {
        cmd_help();
    } else if (strcmp(cmd, "/to") == 0) {
        if (n != 2 || cli_parse_u64(w[1], &id) < 0 || id == 0)
            puts("! usage: /to CONV");
        else {
            r->conv = id;
            printf("* talking in %" PRIu64 "\n", id);
        }
    } else if (strcmp(cmd, "/direct") == 0) {
        if (n != 2) {
            puts("! usage: /direct USER");
        } else if (resolve(r, w[1], &id) == 0) {
            uint64_t conv;
            if (pc_open_direct(r->c, id, &conv) < 0) {
                report(r, "direct");
            } else {
                r->conv = conv;
                printf("* talking with %s in %" PRIu64 "\n", w[1], conv);
            }
        }
    } else if (strcmp(cmd, "/group") == 0) {
        if (n < 2) {
            puts("! usage: /group NAME USER...");
        } else {
            uint64_t ids[MAX_GROUP_USERS];
            int k = 0;
            for (int i = 2; i < n; i++, k++)
                if (resolve(r, w[i], &ids[k]) < 0) break;
            uint64_t conv;
            if (k != n - 2) {
                /* resolve reported which name failed */
            } else if (pc_create_group(r->c, w[1], ids, (size_t)k, &conv) < 0) {
                report(r, "group");
            } else {
                r->conv = conv;
                printf("* created group %s: %" PRIu64 "\n", w[1], conv);
            }
        }
    } else if (strcmp(cmd, "/list") == 0) {
        cmd_list(r);
    } else if (strcmp(cmd, "/history") == 0 || strcmp(cmd, "/read") == 0) {
        if (r->conv == 0)
            puts("! no conversation selected: /to CONV");
        else if (cmd[1] == 'h')
            cmd_history(r, n > 1 ? w[1] : NULL);
        else
            cmd_read(r);
    } else {
        printf("! unknown command %s; /help lists them\n", cmd);
    }
    fflush(stdout);
}

/* Reads what stdin has and runs every complete line. Returns 0, or -1 at
 * EOF (after running a last unterminated line). */
static int read_stdin(repl *r) {
    char buf[4096];
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0) return errno == EINTR || errno == EAGAIN ? 0 : -1;
    if (n == 0) {
        if (r->line_len > 0 && !r->discarding) {
            r->line[r->line_len] = '\0';
            handle_line(r, r->line, r->line_len);
        }
        r->line_len = 0;
        return -1;
    }
    for (ssize_t i = 0; i < n && !r->quit; i++) {
        char ch = buf[i];
        if (ch == '\n') {
            if (!r->discarding) {
                r->line[r->line_len] = '\0';
                handle_line(r, r->line, r->line_len);
            }
            r->line_len = 0;
            r->discarding = false;
        } else if (!r->discarding) {
            if (r->line_len + 1 >= sizeof r->line) {
                puts("! line too long, ignored");
                r->discarding = true;
                r->line_len = 0;
            } else {
                r->line[r->line_len++] = ch;
            }
        }
    }
    return 0;
}

int cli_interactive(cli_ctx *ctx) {
    repl *r = calloc(1, sizeof *r);
    if (!r) {
        fprintf(stderr, CLI_NAME ": chat: out of memory\n");
        return 1;
    }
    r->ctx = ctx;
    r->c = ctx->c;
    if (ctx->ident.name[0]) remember_name(r, ctx->ident.id.user_id, ctx->ident.name);

    char err[512];
    cli_sync_state st;
    if (state_load_sync(ctx->state_dir, &st, err, sizeof err) < 0) {
        fprintf(stderr, CLI_NAME ": chat: %s\n", err);
        free(r);
        return 1;
    }
    pc_set_cursor(r->c, st.cursor);
    for (size_t i = 0; i < st.n_seen; i++) pc_set_seen(r->c, st.seen[i].conv, st.seen[i].seq);
    state_sync_free(&st);
    /* texts encrypted end to end, as with send and sync */
    r->e2e = cli_e2e_sync_begin(ctx, r->c, false);
    if (!r->e2e) {
        free(r);
        return 1;
    }
    pc_on_event(r->c, on_event, r);
    pc_on_typing(r->c, on_typing, r);

    printf("* signed in as %s%suser %" PRIu64 " device %" PRIu32 "; /help for commands\n",
           ctx->ident.name, ctx->ident.name[0] ? ", " : "", ctx->ident.id.user_id,
           ctx->ident.id.device_id);
    fflush(stdout);
    int rc = 0;
    if (pc_start_sync(r->c) < 0) {
        cli_report("chat", r->c);
        rc = 1;
    }
    bool stdin_open = true;
    int64_t last_save = now_ms();
    while (rc == 0 && !r->quit && stdin_open) {
        struct pollfd p[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
                              {.fd = pc_fd(r->c), .events = POLLIN}};
        int np = poll(p, 2, p[1].fd < 0 ? 0 : SAVE_EVERY_MS);
        if (np < 0 && errno != EINTR) break;
        /* the socket first, so what arrived is shown before a reply is sent;
         * a lost connection (fd -1) is repaired inside pc_poll */
        if (p[1].fd < 0 || (np > 0 && p[1].revents)) {
            if (pc_poll(r->c, 0) < 0) {
                cli_report("chat", r->c);
                rc = 1;
                break;
            }
        }
        if (np > 0 && p[0].revents && read_stdin(r) < 0) stdin_open = false;
        if (r->dirty && now_ms() - last_save >= SAVE_EVERY_MS) {
            pc_flush_acks(r->c);
            save_state(r);
            last_save = now_ms();
        }
    }
    pc_flush_acks(r->c);
    save_state(r);
    if (cli_e2e_sync_end(r->e2e) != 0) rc = 1;
    free(r);
    return rc;
}
