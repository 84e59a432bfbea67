/* realtime_cmds.c -- parley-cli's real-time subcommands: presence, receipts,
 * typing, devices, remove-device. Output is JSON lines on stdout, "user" is
 * always a user id. */
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

enum {
    PRESENCE_MAX_USERS = 1024,    /* SubscribePresence limit */
    INITIAL_STATE_MS = 10000,     /* the first states come right after the OK; this is a bound */
    POLL_SLICE_MS = 200,
};

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static volatile sig_atomic_t stop_requested;
static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* ------------------------------------------------------------ presence */

typedef struct presence_watch {
    const uint64_t *ids;
    const char *const *names;
    bool *told;          /* per user: initial state printed */
    size_t n;
    size_t n_told;
    bool watching;       /* past the initial states: print every change */
} presence_watch;

static void print_presence(void *ud, const Parley__V1__Presence *p) {
    presence_watch *w = ud;
    for (size_t i = 0; i < w->n; i++) {
        if (w->ids[i] != p->user_id) continue;
        if (!w->told[i]) {
            w->told[i] = true;
            w->n_told++;
        } else if (!w->watching) {
            return;   /* a change racing the initial state: the state is what counts */
        }
        printf("{\"user\":%" PRIu64 ",\"name\":", p->user_id);
        json_print_string(stdout, w->names[i], strlen(w->names[i]));
        printf(",\"online\":%s,\"last_seen\":%" PRIu64 "}\n", p->online ? "true" : "false",
               p->last_seen_ts);
        fflush(stdout);
        return;
    }
}

int cli_cmd_presence(cli_ctx *ctx, const char *const *names, int n_names, uint64_t watch_s) {
    pc_client *c = ctx->c;
    if (n_names > PRESENCE_MAX_USERS) {
        fprintf(stderr, CLI_NAME ": presence: at most %d users\n", PRESENCE_MAX_USERS);
        return 2;
    }
    uint64_t *ids = calloc((size_t)n_names, sizeof *ids);
    const char **uniq_names = calloc((size_t)n_names, sizeof *uniq_names);
    bool *told = calloc((size_t)n_names, sizeof *told);
    int rc = 0;
    if (!ids || !uniq_names || !told) {
        fprintf(stderr, CLI_NAME ": presence: out of memory\n");
        rc = 1;
        goto out;
    }
    /* one subscription (and one line) per distinct user */
    size_t n = 0;
    for (int i = 0; i < n_names; i++) {
        uint64_t id;
        if (cli_resolve_user(c, "presence", names[i], &id) < 0) {
            rc = 1;
            goto out;
        }
        bool dup = false;
        for (size_t j = 0; j < n && !dup; j++) dup = ids[j] == id;
        if (dup) continue;
        ids[n] = id;
        uniq_names[n++] = names[i];
    }
    presence_watch w = {ids, uniq_names, told, n, 0, false};
    pc_on_presence(c, print_presence, &w);
    pc_stats st;
    pc_get_stats(c, &st);
    uint64_t reconnects = st.reconnects;
    if (pc_subscribe_presence(c, ids, n) < 0) {
        cli_report("presence", c);
        rc = 1;
        goto out_unhook;
    }
    int64_t until = mono_ms() + INITIAL_STATE_MS;
    while (w.n_told < n && mono_ms() < until) {
        if (pc_poll(c, POLL_SLICE_MS) < 0) {
            cli_report("presence", c);
            rc = 1;
            goto out_unhook;
        }
    }
    if (w.n_told < n) {
        fprintf(stderr, CLI_NAME ": presence: the server sent %zu of %zu states\n", w.n_told, n);
        rc = 1;
        goto out_unhook;
    }
    if (watch_s == 0) goto out_unhook;

    struct sigaction sa = {.sa_handler = on_stop_signal};   /* no SA_RESTART: wake poll */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    w.watching = true;
    until = mono_ms() + (int64_t)watch_s * 1000;
    while (!stop_requested) {
        int64_t left = until - mono_ms();
        if (left <= 0) break;
        if (pc_poll(c, left < POLL_SLICE_MS ? (int)left : POLL_SLICE_MS) < 0) {
            cli_report("presence", c);
            rc = 1;
            break;
        }
        /* a subscription lives as long as its connection: renew it on a new one */
        pc_get_stats(c, &st);
        if (st.reconnects != reconnects) {
            reconnects = st.reconnects;
            if (pc_subscribe_presence(c, ids, n) < 0) {
                cli_report("presence", c);
                rc = 1;
                break;
            }
        }
    }
out_unhook:
    pc_on_presence(c, NULL, NULL);
out:
    free(ids);
    free(uniq_names);
    free(told);
    return rc;
}

/* ------------------------------------------------------------ receipts */

int cli_cmd_receipts(cli_ctx *ctx, uint64_t conv) {
    Parley__V1__ReceiptList *l;
    if (pc_get_receipts(ctx->c, conv, &l) < 0) {
        cli_report("receipts", ctx->c);
        return 1;
    }
    for (size_t i = 0; i < l->n_members; i++) {
        const Parley__V1__MemberReceipt *m = l->members[i];
        printf("{\"user\":%" PRIu64 ",\"delivered_seq\":%" PRIu64 ",\"read_seq\":%" PRIu64 "}\n",
               m->user_id, m->delivered_seq, m->read_seq);
    }
    parley__v1__receipt_list__free_unpacked(l, NULL);
    return 0;
}

/* -------------------------------------------------------------- typing */

int cli_cmd_typing(cli_ctx *ctx, uint64_t conv, bool typing) {
    if (pc_typing(ctx->c, conv, typing) < 0) {
        cli_report("typing", ctx->c);
        if (pc_status(ctx->c) == PARLEY__V1__STATUS__RATE_LIMITED)
            fprintf(stderr, CLI_NAME ": typing: try again in %" PRIu64 " ms\n",
                    pc_retry_after_ms(ctx->c));
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------- devices */

int cli_cmd_devices(cli_ctx *ctx, const char *user_name) {
    uint64_t user = 0;   /* 0: one's own */
    if (user_name && cli_resolve_user(ctx->c, "devices", user_name, &user) < 0) return 1;
    Parley__V1__DeviceList *l;
    if (pc_get_devices(ctx->c, user, &l) < 0) {
        cli_report("devices", ctx->c);
        return 1;
    }
    printf("{\"user\":%" PRIu64 ",\"change_counter\":%" PRIu64 ",\"devices\":[", l->user_id,
           l->change_counter);
    for (size_t i = 0; i < l->n_device_ids; i++)
        printf("%s%" PRIu32, i ? "," : "", l->device_ids[i]);
    printf("]}\n");
    parley__v1__device_list__free_unpacked(l, NULL);
    return 0;
}

int cli_cmd_remove_device(cli_ctx *ctx, uint32_t device_id) {
    if (device_id == ctx->ident.id.device_id) {
        fprintf(stderr, CLI_NAME ": remove-device: %" PRIu32
                        " is this device; remove it from another one\n", device_id);
        return 1;
    }
    if (pc_remove_device(ctx->c, device_id) < 0) {
        cli_report("remove-device", ctx->c);
        return 1;
    }
    return 0;
}
