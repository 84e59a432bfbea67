/* e2e_cli.c -- parley-cli's end-to-end encryption (send --e2e, sync --e2e)
 * on libparley's key store (parley_e2e.h).
 *
 * The store lives in the state directory as "e2e" (0600, written whole and
 * renamed like the other state files): it holds private keys, like
 * "identity". It is made and its public keys uploaded on first use, and
 * saved after every command that changed it.
 *
 * sync --e2e: a conversation message may arrive before the device message
 * that carries its sender key, so one that finds no key waits (at most
 * PENDING_MAX) and is printed once the key is there; whatever still waits
 * when sync ends is printed as undecryptable with the reason: a message is
 * never dropped silently. Messages this device sent itself cannot be
 * decrypted by it (the sender keeps no plaintext) and say so. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/stat.h>

#include <sodium.h>

#include "cli.h"
#include "e2e/e2e.h"
#include "parley_e2e.h"

enum { PENDING_MAX = 4096, ERR_CAP = 512 };

static const char STORE_FILE[] = "e2e";

static bool store_exists(cli_ctx *ctx) {
    char path[4096];
    struct stat st;
    return (size_t)snprintf(path, sizeof path, "%s/%s", ctx->state_dir, STORE_FILE) < sizeof path &&
           stat(path, &st) == 0;
}

/* The device's key store: loaded, or made and published. NULL after printing why. */
static pc_e2e *store_open(cli_ctx *ctx, pc_client *c, const char *cmd) {
    char err[ERR_CAP];
    uint8_t *data = NULL;
    size_t len = 0;
    int r = state_read_blob(ctx->state_dir, STORE_FILE, PC_E2E_MAX_STORE_BYTES, &data, &len, err, sizeof err);
    if (r < 0) {
        fprintf(stderr, CLI_NAME ": %s: %s\n", cmd, err);
        return NULL;
    }
    pc_e2e *e = NULL;
    if (r == 1) {
        int st = pc_e2e_load(&e, data, len);
        sodium_memzero(data, len);
        free(data);
        if (st != 0) {
            fprintf(stderr, CLI_NAME ": %s: %s/%s: %s\n", cmd, ctx->state_dir, STORE_FILE, e2e_strerror(st));
            return NULL;
        }
        /* the signed pre-key rotates weekly (saved with the store after the command) */
        if (pc_e2e_maintain(e, c, (uint64_t)time(NULL) * 1000) < 0) cli_report(cmd, c);
        return e;
    }
    e = pc_e2e_new();
    if (!e) {
        fprintf(stderr, CLI_NAME ": %s: out of memory\n", cmd);
        return NULL;
    }
    if (pc_e2e_publish(e, c) != 0) {
        cli_report(cmd, c);
        pc_e2e_free(e);
        return NULL;
    }
    return e;
}

static int store_save(cli_ctx *ctx, const pc_e2e *e, const char *cmd) {
    uint8_t *data = NULL;
    size_t len = 0;
    char err[ERR_CAP];
    if (pc_e2e_save(e, &data, &len) != 0) {
        fprintf(stderr, CLI_NAME ": %s: cannot save the key store: out of memory\n", cmd);
        return -1;
    }
    int r = state_write_blob(ctx->state_dir, STORE_FILE, data, len, err, sizeof err);
    sodium_memzero(data, len);
    free(data);
    if (r < 0) fprintf(stderr, CLI_NAME ": %s: %s\n", cmd, err);
    return r;
}

/* conv's members, from ListConversations: a malloc'd array, or NULL after printing why. */
static uint64_t *members_of(pc_client *c, uint64_t conv, size_t *n) {
    Parley__V1__ConversationList *l = NULL;
    if (pc_list_conversations(c, &l) < 0) {
        cli_report("send", c);
        return NULL;
    }
    uint64_t *out = NULL;
    for (size_t i = 0; i < l->n_conversations; i++) {
        const Parley__V1__ConversationSummary *s = l->conversations[i];
        if (s->conversation_id != conv) continue;
        *n = s->n_member_user_ids < PC_E2E_MAX_MEMBERS ? s->n_member_user_ids : PC_E2E_MAX_MEMBERS;
        out = malloc((*n ? *n : 1) * sizeof *out);
        if (out && *n) memcpy(out, s->member_user_ids, *n * sizeof *out);
        break;
    }
    parley__v1__conversation_list__free_unpacked(l, NULL);
    if (!out)   /* what the server answers a send there: forbidden */
        fprintf(stderr, CLI_NAME ": send: conversation %" PRIu64 " is not one of yours (%d)\n", conv,
                PARLEY__V1__STATUS__FORBIDDEN);
    return out;
}

/* KeysLow comes during a poll; the refill (a request) waits for the end of
 * the command (refill_if_low) */
static void note_keys_low(void *ud, uint32_t left) {
    (void)left;
    *(bool *)ud = true;
}

static void refill_if_low(pc_e2e *e, pc_client *c, bool low, const char *cmd) {
    if (low && e && pc_e2e_refill(e, c) != 0) cli_report(cmd, c);
}

static void keep_device_message(void *ud, const Parley__V1__DeviceMessage *m) {
    /* a device message is acked once handed out: one that comes while we
     * send is applied now, or its sender key would be lost */
    int st = pc_e2e_handle_device_message(ud, m);
    if (st != 0)
        fprintf(stderr, CLI_NAME ": a device message from user %" PRIu64 " device %" PRIu32 ": %s\n",
                m->sender_user_id, m->sender_device_id, e2e_strerror(st));
}

int cli_e2e_send(cli_ctx *ctx, uint64_t conv, const char *text, size_t len) {
    pc_e2e *e = store_open(ctx, ctx->c, "send");
    if (!e) return 1;
    pc_on_device_message(ctx->c, keep_device_message, e);
    bool low = false;
    pc_on_keys_low(ctx->c, note_keys_low, &low);
    size_t n = 0;
    uint64_t *members = members_of(ctx->c, conv, &n), seq = 0;
    int rc = 1;
    if (members) {
        if (pc_e2e_send(e, ctx->c, conv, members, n, text, len, &seq) == 0) {
            printf("%" PRIu64 "\n", seq);
            rc = 0;
            if (pt_store_put(ctx->state_dir, conv, seq, text, len) < 0)
                fprintf(stderr, CLI_NAME ": send: sent, but not kept in %s/plaintext (full, or %s): "
                                "history on this device will not show it\n", ctx->state_dir, strerror(errno));
        } else {
            cli_report("send", ctx->c);
        }
    }
    pc_on_device_message(ctx->c, NULL, NULL);
    pc_on_keys_low(ctx->c, NULL, NULL);
    refill_if_low(e, ctx->c, low, "send");
    cli_e2e_warn_identities(ctx, e, stderr);   /* stdout is the seq */
    /* saved even after a failure: sessions made and keys handed out stay valid */
    if (store_save(ctx, e, "send") < 0) rc = 1;
    free(members);
    pc_e2e_free(e);
    return rc;
}

/* ----------------------------------------------------------------- sync */

typedef struct pending {
    uint64_t user_seq;
    Parley__V1__Message *m;   /* a packed and unpacked copy: owns its bytes */
} pending;

struct cli_e2e_sync {
    cli_ctx *ctx;
    pc_client *c;
    pc_e2e *e;                /* NULL: keys only and no store yet */
    bool keys_only;           /* --plaintext: printed as they are, sender keys still kept */
    pt_store shown;           /* what this device decrypted or sent before */
    bool shown_stale;         /* the file grew since shown was read */
    bool keys_low;            /* KeysLow heard: refilled at the end */
    pending *p;
    size_t n, cap;
};

cli_e2e_sync *cli_e2e_sync_begin(cli_ctx *ctx, pc_client *c, bool keys_only) {
    cli_e2e_sync *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->ctx = ctx;
    s->c = c;
    s->keys_only = keys_only;
    char err[ERR_CAP];
    if (!keys_only && pt_store_load(ctx->state_dir, &s->shown, err, sizeof err) < 0) {
        fprintf(stderr, CLI_NAME ": sync: %s\n", err);
        free(s);
        return NULL;
    }
    /* a plain sync makes no key store, but keeps using one that exists:
     * the device messages it acks carry sender keys */
    if (keys_only && !store_exists(ctx)) return s;
    s->e = store_open(ctx, c, "sync");
    if (!s->e) {
        pt_store_free(&s->shown);
        free(s);
        return NULL;
    }
    pc_on_device_message(c, keep_device_message, s->e);
    pc_on_keys_low(c, note_keys_low, &s->keys_low);
    return s;
}

/* 1 printed (decrypted or for good undecryptable), 0 still waiting for its key. */
static int try_print(cli_e2e_sync *s, uint64_t user_seq, const Parley__V1__Message *m, bool last_chance) {
    if (m->type != PARLEY__V1__MESSAGE_TYPE__TEXT) {   /* membership events and the like are not encrypted */
        json_print_message(stdout, user_seq, m);
        return 1;
    }
    if (s->keys_only) {
        json_print_message(stdout, user_seq, m);
        return 1;
    }
    if (cli_e2e_print_kept(&s->shown, user_seq, m)) return 1;   /* sent (or read) here before */
    if (m->sender_user_id == s->ctx->ident.id.user_id && m->sender_device_id == s->ctx->ident.id.device_id) {
        json_print_undecryptable(stdout, user_seq, m, "sent from this device, and not in its plaintext store");
        return 1;
    }
    uint8_t *pt = NULL;
    size_t n = 0;
    int st = pc_e2e_decrypt(s->e, m, &pt, &n);
    if (st == E2E_ERR_WRONG_KEY && !last_chance) return 0;
    if (st == 0) {
        Parley__V1__Message shown = *m;
        shown.body.data = pt;
        shown.body.len = n;
        json_print_message(stdout, user_seq, &shown);
        if (pt_store_put(s->ctx->state_dir, m->conversation_id, m->seq, pt, n) < 0)
            fprintf(stderr, CLI_NAME ": sync: conv %" PRIu64 " seq %" PRIu64 " not kept in %s/plaintext: "
                            "history on this device will not show it\n",
                    m->conversation_id, m->seq, s->ctx->state_dir);
        sodium_memzero(pt, n);
    } else {
        json_print_undecryptable(stdout, user_seq, m, e2e_strerror(st));
    }
    free(pt);
    return 1;
}

static Parley__V1__Message *copy_message(const Parley__V1__Message *m) {
    size_t n = parley__v1__message__get_packed_size(m);
    uint8_t *b = malloc(n ? n : 1);
    if (!b) return NULL;
    parley__v1__message__pack(m, b);
    Parley__V1__Message *c = parley__v1__message__unpack(NULL, n, b);
    free(b);
    return c;
}

void cli_e2e_sync_event(cli_e2e_sync *s, uint64_t user_seq, const Parley__V1__Message *m) {
    /* in order: while any waits, later ones wait behind it */
    if (s->n == 0 && try_print(s, user_seq, m, false)) return;
    Parley__V1__Message *c = s->n < PENDING_MAX ? copy_message(m) : NULL;
    pending *np = c && s->n == s->cap ? realloc(s->p, (s->cap ? s->cap * 2 : 16) * sizeof *np) : s->p;
    if (!c || !np) {   /* no room to wait: shown now, as it is */
        if (c) parley__v1__message__free_unpacked(c, NULL);
        try_print(s, user_seq, m, true);
        return;
    }
    if (np != s->p) {
        s->p = np;
        s->cap = s->cap ? s->cap * 2 : 16;
    }
    s->p[s->n++] = (pending){user_seq, c};
}

/* Prints the waiting messages from the oldest on while they decrypt (all of
 * them, decrypted or not, when last). */
static void flush(cli_e2e_sync *s, bool last) {
    size_t done = 0;
    while (done < s->n && try_print(s, s->p[done].user_seq, s->p[done].m, last)) {
        parley__v1__message__free_unpacked(s->p[done].m, NULL);
        done++;
    }
    if (done == 0) return;
    memmove(s->p, s->p + done, (s->n - done) * sizeof *s->p);
    s->n -= done;
}

void cli_e2e_sync_retry(cli_e2e_sync *s) {
    if (s->n) flush(s, false);
}

int cli_e2e_sync_end(cli_e2e_sync *s) {
    flush(s, true);
    fflush(stdout);
    pc_on_device_message(s->c, NULL, NULL);
    pc_on_keys_low(s->c, NULL, NULL);
    refill_if_low(s->e, s->c, s->keys_low, "sync");
    if (s->e) cli_e2e_warn_identities(s->ctx, s->e, stdout);
    int rc = s->e && store_save(s->ctx, s->e, "sync") < 0 ? 1 : 0;
    pc_e2e_free(s->e);
    pt_store_free(&s->shown);
    free(s->p);
    free(s);
    return rc;
}

/* ---------------------------------------------------------- interactive */

static int find_kept(cli_e2e_sync *s, const Parley__V1__Message *m, const uint8_t **text, size_t *len) {
    if (pt_store_find(&s->shown, m->conversation_id, m->seq, text, len)) return 1;
    if (!s->shown_stale) return 0;
    char err[ERR_CAP];
    pt_store_free(&s->shown);
    s->shown_stale = false;
    return pt_store_load(s->ctx->state_dir, &s->shown, err, sizeof err) == 0 &&
           pt_store_find(&s->shown, m->conversation_id, m->seq, text, len);
}

int cli_e2e_reveal(cli_e2e_sync *s, const Parley__V1__Message *m, uint8_t **text, size_t *len, const char **why) {
    *text = NULL;
    *len = 0;
    const uint8_t *kept = NULL;
    if (find_kept(s, m, &kept, len)) {
        *text = malloc(*len ? *len : 1);
        if (!*text) {
            *why = "out of memory";
            return 0;
        }
        memcpy(*text, kept, *len);
        return 1;
    }
    if (m->sender_user_id == s->ctx->ident.id.user_id && m->sender_device_id == s->ctx->ident.id.device_id) {
        *why = "sent from this device, and not in its plaintext store";
        return 0;
    }
    int st = s->e ? pc_e2e_decrypt(s->e, m, text, len) : E2E_ERR_WRONG_KEY;
    if (st != 0) {
        *why = e2e_strerror(st);
        return 0;
    }
    if (pt_store_put(s->ctx->state_dir, m->conversation_id, m->seq, *text, *len) == 0) s->shown_stale = true;
    return 1;
}

int cli_e2e_send_in(cli_e2e_sync *s, uint64_t conv, const char *text, size_t len, uint64_t *seq) {
    size_t n = 0;
    uint64_t *members = members_of(s->c, conv, &n);
    if (!members) return -1;
    int r = pc_e2e_send(s->e, s->c, conv, members, n, text, len, seq);
    free(members);
    if (r != 0) return -1;
    if (pt_store_put(s->ctx->state_dir, conv, *seq, text, len) == 0) s->shown_stale = true;
    store_save(s->ctx, s->e, "chat");   /* the sessions and the key handed out stay with the device */
    return 0;
}

/* ------------------------------------------------------- history, register */

int cli_e2e_print_kept(const pt_store *kept, uint64_t user_seq, const Parley__V1__Message *m) {
    const uint8_t *text = NULL;
    size_t len = 0;
    if (m->type != PARLEY__V1__MESSAGE_TYPE__TEXT || !pt_store_find(kept, m->conversation_id, m->seq, &text, &len))
        return 0;
    Parley__V1__Message shown = *m;
    shown.body.data = (uint8_t *)text;
    shown.body.len = len;
    json_print_message(stdout, user_seq, &shown);
    return 1;
}

void cli_e2e_print_history(const pt_store *kept, const Parley__V1__Message *m) {
    if (m->type != PARLEY__V1__MESSAGE_TYPE__TEXT) {
        json_print_message(stdout, 0, m);
        return;
    }
    if (!cli_e2e_print_kept(kept, 0, m))
        json_print_undecryptable(stdout, 0, m, "not read on this device (history shows what this device "
                                               "decrypted or sent: a message key is used once)");
}

int cli_e2e_prepare(cli_ctx *ctx, pc_client *c, const char *cmd) {
    pc_e2e *e = store_open(ctx, c, cmd);
    if (!e) return -1;
    int r = store_save(ctx, e, cmd);
    pc_e2e_free(e);
    return r;
}

/* --------------------------------------------------------------- verify */

/* The state file "verified": the identity keys the user marked as verified
 * (verify USER --mark), records of user (u64 LE) device (u32 LE) key (32),
 * at most MARKS_MAX. */
enum { MARK_BYTES = 8 + 4 + 32, MARKS_MAX = 4096 };
static const char MARKS_FILE[] = "verified";

typedef struct marks {
    uint8_t *data;
    size_t n;
} marks;

static int marks_load(cli_ctx *ctx, marks *m, const char *cmd) {
    char err[ERR_CAP];
    size_t len = 0;
    m->data = NULL;
    m->n = 0;
    if (state_read_blob(ctx->state_dir, MARKS_FILE, (size_t)MARK_BYTES * MARKS_MAX, &m->data, &len, err, sizeof err) < 0 ||
        len % MARK_BYTES) {
        fprintf(stderr, CLI_NAME ": %s: %s/%s: unreadable\n", cmd, ctx->state_dir, MARKS_FILE);
        free(m->data);
        m->data = NULL;
        return -1;
    }
    m->n = len / MARK_BYTES;
    return 0;
}

static uint64_t mark_u(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n; i-- > 0;) v = v << 8 | p[i];
    return v;
}

/* 1 when (user, device, key) is marked, else 0 */
static int marked(const marks *m, uint64_t user, uint32_t device, const uint8_t key[32]) {
    for (size_t i = 0; i < m->n; i++) {
        const uint8_t *r = m->data + i * MARK_BYTES;
        if (mark_u(r, 8) == user && mark_u(r + 8, 4) == device && sodium_memcmp(r + 12, key, 32) == 0) return 1;
    }
    return 0;
}

void cli_e2e_warn_identities(cli_ctx *ctx, const pc_e2e *e, FILE *out) {
    marks m;
    if (marks_load(ctx, &m, "warning") < 0) return;
    /* each user with a mark: any device of theirs with a key not marked */
    for (size_t i = 0; i < m.n; i++) {
        uint64_t user = mark_u(m.data + i * MARK_BYTES, 8);
        bool first = true;
        for (size_t j = 0; j < i && first; j++) first = mark_u(m.data + j * MARK_BYTES, 8) != user;
        if (!first) continue;
        uint32_t devices[PC_E2E_MAX_DEVICES];
        size_t n = pc_e2e_known_devices(e, user, devices, PC_E2E_MAX_DEVICES);
        for (size_t k = 0; k < n && k < PC_E2E_MAX_DEVICES; k++) {
            uint8_t key[32];
            if (pc_e2e_peer_identity(e, user, devices[k], key) != 0 || marked(&m, user, devices[k], key)) continue;
            fprintf(out, "{\"warning\":\"identity_changed\",\"user\":%" PRIu64 ",\"device\":%" PRIu32
                         ",\"reason\":\"a key of a verified user that you have not verified: compare "
                         "safety numbers (verify), then verify --mark\"}\n", user, devices[k]);
        }
    }
    free(m.data);
}

int cli_e2e_verify(cli_ctx *ctx, const char *user_name, bool mark) {
    uint64_t user = 0;
    if (cli_resolve_user(ctx->c, "verify", user_name, &user) < 0) return 1;
    pc_e2e *e = store_open(ctx, ctx->c, "verify");
    if (!e) return 1;
    marks m;
    if (marks_load(ctx, &m, "verify") < 0) {
        pc_e2e_free(e);
        return 1;
    }
    uint32_t devices[PC_E2E_MAX_DEVICES];
    size_t n = pc_e2e_known_devices(e, user, devices, PC_E2E_MAX_DEVICES);
    if (n > PC_E2E_MAX_DEVICES) n = PC_E2E_MAX_DEVICES;
    int rc = 0;
    if (mark && n) {   /* USER's marks replaced by the keys shown now */
        uint8_t *next = malloc((m.n + n) * MARK_BYTES);
        size_t kept = 0;
        for (size_t i = 0; next && i < m.n; i++)
            if (mark_u(m.data + i * MARK_BYTES, 8) != user)
                memcpy(next + kept++ * MARK_BYTES, m.data + i * MARK_BYTES, MARK_BYTES);
        for (size_t i = 0; next && i < n; i++) {
            uint8_t *r = next + kept * MARK_BYTES;
            for (int b = 0; b < 8; b++) r[b] = (uint8_t)(user >> (8 * b));
            for (int b = 0; b < 4; b++) r[8 + b] = (uint8_t)(devices[i] >> (8 * b));
            if (pc_e2e_peer_identity(e, user, devices[i], r + 12) == 0) kept++;
        }
        char err[ERR_CAP];
        if (!next || kept > MARKS_MAX || state_write_blob(ctx->state_dir, MARKS_FILE, next, kept * MARK_BYTES, err, sizeof err) < 0) {
            fprintf(stderr, CLI_NAME ": verify: cannot save the marks%s\n", kept > MARKS_MAX ? ": too many" : "");
            rc = 1;
        } else {
            free(m.data);
            m.data = next;
            m.n = kept;
            next = NULL;
        }
        free(next);
    }
    for (size_t i = 0; i < n; i++) {
        char number[E2E_SAFETY_NUMBER_LEN];
        uint8_t key[32];
        if (pc_e2e_safety_number(e, user, devices[i], number) != 0 || pc_e2e_peer_identity(e, user, devices[i], key) != 0)
            continue;
        printf("{\"user\":%" PRIu64 ",\"device\":%" PRIu32 ",\"safety_number\":\"%s\",\"verified\":%s}\n", user,
               devices[i], number, marked(&m, user, devices[i], key) ? "true" : "false");
    }
    free(m.data);
    if (n == 0) {
        fprintf(stderr, CLI_NAME ": verify: no encrypted session with %s's devices yet: exchange an encrypted message first\n",
                user_name);
        rc = 1;
    }
    if (store_save(ctx, e, "verify") < 0) rc = 1;
    pc_e2e_free(e);
    return rc;
}
