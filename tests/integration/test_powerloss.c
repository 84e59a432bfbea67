/* test_powerloss.c -- fsync is tested: a simulated power loss, not only a
 * kill -9 (which leaves the page cache, and so every unsynced write, intact).
 *
 * Each case runs the real server three times on one data directory:
 *   1. without the power-loss library: two users and their conversation
 *      (made durable by the clean restart that follows);
 *   2. under tests/powerloss/ (LD_PRELOAD), with --fsync MODE: the recipient
 *      uploads its keys, the sender sends acknowledged messages one by one
 *      (so over many commits) and claims some of the recipient's one-time
 *      pre-keys, the recipient acknowledges what it received (its cursor)
 *      and more messages and a last claim follow; then the plug is pulled:
 *      kill -9 and the data directory rebuilt as the disk would have kept it;
 *   3. without the library: what survived is checked.
 * With always and batch every acknowledged message is in history once and in
 * order, the device cursor is the acknowledged one, the keys are there and no
 * claimed one-time pre-key is handed out again. With off, acknowledged
 * messages are lost: deterministic, not luck, because with off nothing
 * fsyncs RocksDB's WAL in run 2 (a memtable, 16 MiB, never fills and
 * flushes in a test this size), so everything acknowledged in run 2 is in the dropped tail.
 *
 * Also, with always and batch: the plug pulled while four senders are still
 * sending into one group (group commits of several messages): every message
 * acknowledged before it survives once, in each sender's order. And
 * one-time pre-keys are handed out exactly once across kill -9 and a
 * restart (no power loss). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "harness.h"
#include "powerloss_recover.h"
#include "store/store.h"

enum {
    WAIT_MS = 30000,
    MESSAGES = 60,      /* before the cursor ack */
    TAIL = 5,           /* after it: the last acknowledged writes before the plug */
    KEYS = 24,          /* one-time pre-keys uploaded */
    CLAIM_EVERY = 10,   /* a claim every this many messages */
    MAX_CLAIMS = 64,
    SENDERS = 4,            /* concurrent senders when the plug is pulled mid-flight */
    PER_SENDER = 400,       /* at most this many each */
    ACKED_BEFORE_PLUG = 120,/* the plug is pulled once this many are acknowledged */
};

#define NEED(x) CHECK((x), "%s", #x)

static h_server S;

/* ------------------------------------------------------------- helpers */

static void fill(uint8_t *b, size_t n, uint8_t tag) {
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(tag * 31 + i);
}

/* Identity key (tag), signed pre-key 7 and one-time pre-keys 1..n. */
static int upload_keys(h_dev *d, uint8_t tag, uint32_t n) {
    uint8_t ik[32], spk[32], sig[64];
    static uint8_t keys[KEYS][32];
    pc_prekey otk[KEYS];
    h_test_keys(tag, ik, spk, sig);
    pc_prekey signed_pk = { 7, spk, sizeof spk, sig, sizeof sig };
    for (uint32_t i = 0; i < n && i < KEYS; i++) {
        fill(keys[i], 32, (uint8_t)(i + 1));
        otk[i] = (pc_prekey){ i + 1, keys[i], 32, NULL, 0 };
    }
    uint32_t left = 0;
    if (pc_upload_keys(d->c, ik, sizeof ik, &signed_pk, otk, n, &left) != 0 || left != n) {
        fprintf(stderr, "  upload: %s (status %d), %u left\n", pc_error(d->c), pc_status(d->c), left);
        return -1;
    }
    return 0;
}

/* Claims one of owner's one-time pre-keys as claimer: 1 and *key_id, 0 when
 * none is left, -1 on failure. *ik_ok: the bundle carries identity key tag. */
static int claim(h_dev *claimer, const h_dev *owner, uint8_t tag, uint32_t *key_id, int *ik_ok) {
    Parley__V1__KeyBundles *kb = NULL;
    if (pc_fetch_keys(claimer->c, owner->id.user_id, &kb) != 0) {
        fprintf(stderr, "  fetch keys: %s (status %d)\n", pc_error(claimer->c), pc_status(claimer->c));
        return -1;
    }
    int rc = 0;
    if (ik_ok) {
        uint8_t want[32], spk[32], sig[64];
        h_test_keys(tag, want, spk, sig);
        *ik_ok = kb->n_devices == 1 && kb->devices[0]->identity_key.len == 32 &&
                 memcmp(kb->devices[0]->identity_key.data, want, 32) == 0 &&
                 kb->devices[0]->signed_pre_key && kb->devices[0]->signed_pre_key->key_id == 7;
    }
    if (kb->n_devices == 1 && kb->devices[0]->one_time_pre_key) {
        *key_id = kb->devices[0]->one_time_pre_key->key_id;
        rc = 1;
    }
    parley__v1__key_bundles__free_unpacked(kb, NULL);
    return rc;
}

static int in(const uint32_t *ids, size_t n, uint32_t id) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id) return 1;
    return 0;
}

/* Claims owner's keys until none is left (bounded) and checks that none of
 * claimed[] comes back, none comes twice, and every other one of 1..n_keys
 * does. 0, or -1 with the reason on stderr. */
static int drain_keys_exactly_once(h_dev *claimer, const h_dev *owner, uint8_t tag, uint32_t n_keys,
                                   const uint32_t *claimed, size_t n_claimed) {
    uint32_t seen[KEYS + 8];
    size_t n_seen = 0;
    for (int round = 0; round < KEYS + 8; round++) {
        uint32_t id = 0;
        int ik_ok = 0;
        int r = claim(claimer, owner, tag, &id, &ik_ok);
        if (r < 0) return -1;
        if (!ik_ok) {
            fprintf(stderr, "  the bundle lost its identity or signed pre-key\n");
            return -1;
        }
        if (r == 0) break;
        if (in(claimed, n_claimed, id)) {
            fprintf(stderr, "  one-time pre-key %u handed out again after the restart\n", id);
            return -1;
        }
        if (in(seen, n_seen, id)) {
            fprintf(stderr, "  one-time pre-key %u handed out twice after the restart\n", id);
            return -1;
        }
        if (n_seen == sizeof seen / sizeof seen[0]) break;
        seen[n_seen++] = id;
    }
    if (n_seen + n_claimed != n_keys) {
        fprintf(stderr, "  %zu keys claimed before, %zu after: %u were uploaded\n", n_claimed, n_seen, n_keys);
        return -1;
    }
    return 0;
}

/* The cursor stored for (user, device), read straight from the store (the
 * server is not running). 0 if absent. */
static int stored_cursor(const char *data, uint64_t user, uint32_t device, uint64_t *out) {
    char *err = NULL;
    store *st = store_open(data, 0, 0, &err);
    if (!st) {
        fprintf(stderr, "  store_open %s: %s\n", data, err ? err : "?");
        free(err);
        return -1;
    }
    int r = store_get_cursor(st, user, device, out);
    store_close(st);
    return r < 0 ? -1 : 0;
}

/* How many of exp[0..n) history holds exactly once, at their seq, and
 * whether history's messages are exactly exp in order (*exact). */
static size_t count_in_history(h_dev *d, uint64_t conv, const h_sent *exp, size_t n, int *exact) {
    size_t nh = 0;
    h_event *hist = h_history_all(d, conv, &nh);
    *exact = 0;
    if (!hist) return 0;
    size_t found = 0, k = 0;
    int in_order = 1;
    for (size_t i = 0; i < nh; i++) {
        if (hist[i].type == PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP) continue;
        if (k < n && hist[i].seq == exp[k].seq && hist[i].sender_user_id == exp[k].sender &&
            h_event_body_is(&hist[i], exp[k].text))
            k++;
        else
            in_order = 0;
    }
    for (size_t j = 0; j < n; j++) {
        int times = 0;
        for (size_t i = 0; i < nh; i++)
            if (hist[i].seq == exp[j].seq && h_event_body_is(&hist[i], exp[j].text)) times++;
        if (times == 1) found++;
        else if (times > 1) in_order = 0;
    }
    *exact = in_order && k == n;
    h_events_free(hist, nh);
    return found;
}

/* ------------------------------------------------------------ the cases */

static void power_loss(const char *mode, int durable) {
    const char *flags[] = { "--fsync", mode, "--send-rate", "100000", NULL };
    CHECK(h_server_start(&S, flags) == 0, "start with --fsync %s", mode);

    /* run 1: users and their conversation, durable before the window */
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    NEED(h_accept(b, conv) == 0);   /* past the message-request bounds (messages, key claims) */
    h_dev_disconnect(a);   /* closed by the client: the drain need not wait for them */
    h_dev_disconnect(b);
    CHECK(h_server_stop(&S) >= 0, "clean stop after run 1");

    /* run 2: under the power-loss library */
    char journal[400];
    snprintf(journal, sizeof journal, "%s/powerloss.journal", S.dir);
    powerloss_env_set(S.data, journal);
    int restarted = h_server_restart(&S);
    powerloss_env_clear();
    CHECK(restarted == 0, "start under the power-loss library (%s)", powerloss_preload());
    NEED(h_dev_reconnect(&S, a, 0) == 0 && h_dev_reconnect(&S, b, 0) == 0);
    NEED(h_dev_sync(b, WAIT_MS) == 0);
    NEED(upload_keys(b, 1, KEYS) == 0);

    h_sent *exp = h_calloc(MESSAGES + TAIL + 1, sizeof *exp);
    NEED(exp);
    size_t n = 0;
    uint32_t claimed[MAX_CLAIMS];
    size_t n_claimed = 0;
    char text[64];
    for (int i = 0; i < MESSAGES; i++) {
        snprintf(text, sizeof text, "%s power loss %d", mode, i);
        CHECK(h_send_rec(a, conv, text, exp, &n) == 0, "send %d", i);
        if (i % CLAIM_EVERY == CLAIM_EVERY - 1) {
            uint32_t id = 0;
            CHECK(claim(a, b, 1, &id, NULL) == 1, "claim %zu", n_claimed);
            claimed[n_claimed++] = id;
        }
    }
    /* b acknowledges everything it got; its next request (mark read) is
     * answered after the writer committed the ack before it */
    h_dev *one[1] = { b };
    h_count_goal g = { one, 1, conv, n, 1 };
    CHECK(h_pump(one, 1, h_pred_count, &g, WAIT_MS), "b got %zu of %zu messages", h_dev_count(b, conv), n);
    NEED(pc_flush_acks(b->c) == 0);
    uint64_t cursor = pc_cursor(b->c);
    NEED(cursor > 0);
    NEED(pc_mark_read(b->c, conv, exp[n - 1].seq) == 0);
    for (int i = 0; i < TAIL; i++) {
        snprintf(text, sizeof text, "%s tail %d", mode, i);
        CHECK(h_send_rec(a, conv, text, exp, &n) == 0, "tail send %d", i);
    }
    /* the last acknowledged write is a claim: nothing synced after it */
    uint32_t last = 0;
    CHECK(claim(a, b, 1, &last, NULL) == 1, "last claim");
    claimed[n_claimed++] = last;

    /* pull the plug, right after the last acknowledgement */
    h_server_kill9(&S);
    powerloss_report rep;
    char why[512];
    CHECK(powerloss_recover(S.data, journal, &rep, why, sizeof why) == 0, "recover: %s", why);
    fprintf(stderr,
            "  [%s] power loss: %zu files kept, %zu dropped, %llu unsynced bytes dropped, %zu file syncs, "
            "%zu directory syncs\n",
            mode, rep.files_kept, rep.files_dropped, (unsigned long long)rep.bytes_dropped, rep.syncs,
            rep.dir_syncs);

    /* run 3: what survived */
    uint64_t stored = 0;
    CHECK(stored_cursor(S.data, b->id.user_id, b->id.device_id, &stored) == 0, "read the cursor");
    CHECK(h_server_restart(&S) == 0, "restart after the power loss");
    NEED(h_dev_reconnect(&S, a, 0) == 0);
    int exact = 0;
    size_t found = count_in_history(a, conv, exp, n, &exact);
    fprintf(stderr, "  [%s] after the power loss: %zu of %zu acknowledged messages in history, cursor %llu of %llu\n",
            mode, found, n, (unsigned long long)stored, (unsigned long long)cursor);
    if (durable) {
        CHECK(exact && found == n,
              "--fsync %s: history is not exactly the %zu acknowledged messages in order (%zu found once)", mode,
              n, found);
        CHECK(stored == cursor, "--fsync %s: stored cursor %llu, the device acknowledged %llu", mode,
              (unsigned long long)stored, (unsigned long long)cursor);
        CHECK(drain_keys_exactly_once(a, b, 1, KEYS, claimed, n_claimed) == 0,
              "--fsync %s: the key directory is not as acknowledged", mode);
        /* the inbox tail was committed without fsync (fan-out) and is gone:
         * the fan-out replay rebuilds it, so a fresh device of b syncing
         * from 0 gets every acknowledged message once, in order */
        h_dev *fresh = h_dev_for_identity(&S, &b->id, "b(resync)", 0);
        CHECK(fresh, "b signs in again");
        NEED(h_dev_sync(fresh, WAIT_MS) == 0);
        h_dev *f1[1] = { fresh };
        h_count_goal fg = { f1, 1, conv, n, 1 };
        h_pump(f1, 1, h_pred_count, &fg, WAIT_MS);
        CHECK(h_expect_exact(fresh, conv, exp, n, why, sizeof why) == 0, "--fsync %s: inbox of b: %s", mode, why);
        h_dev_free(fresh);
        /* and no seq is handed out twice */
        uint64_t max_acked = exp[n - 1].seq;
        CHECK(h_send_rec(a, conv, "after the power loss", exp, &n) == 0, "send after the power loss");
        CHECK(exp[n - 1].seq > max_acked, "--fsync %s: seq %llu reused after the power loss (max acked %llu)",
              mode, (unsigned long long)exp[n - 1].seq, (unsigned long long)max_acked);
    } else {
        CHECK(found < n, "--fsync off: all %zu acknowledged messages survived a power loss; the test "
                         "cannot tell off from batch",
              n);
    }
    h_free(exp);
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

static void power_loss_fsync_always(void) {
    power_loss("always", 1);
    h_server_destroy(&S);
}

static void power_loss_fsync_batch(void) {
    power_loss("batch", 1);
    h_server_destroy(&S);
}

static void power_loss_fsync_off_loses_acked(void) {
    power_loss("off", 0);
    h_server_destroy(&S);
}

/* Several senders at once into one group, so group commits hold several
 * messages; the plug is pulled while they are still sending. Every message
 * acknowledged before the plug survives once, each sender's in its order;
 * a message in flight at the plug may or may not. */
typedef struct sender {
    pc_client *c;
    uint64_t user;
    uint64_t conv;
    int index;
    h_sent acked[PER_SENDER];
    size_t n_acked;
    atomic_size_t *total;
    atomic_int *stop;
} sender;

static void *sender_main(void *arg) {
    sender *s = arg;
    char text[64];
    for (int i = 0; i < PER_SENDER && !atomic_load(s->stop); i++) {
        snprintf(text, sizeof text, "sender %d msg %d", s->index, i);
        uint64_t seq = 0;
        /* no reconnect: once the server is gone this fails at once, so
         * nothing counted here was acknowledged after the plug */
        if (pc_send_text(s->c, s->conv, text, &seq) != 0) break;
        h_sent *a = &s->acked[s->n_acked++];
        a->seq = seq;
        a->sender = s->user;
        snprintf(a->text, sizeof a->text, "%s", text);
        atomic_fetch_add(s->total, 1);
    }
    return NULL;
}

static int pred_total(void *ud) { return atomic_load((atomic_size_t *)ud) >= ACKED_BEFORE_PLUG; }

static void power_loss_mid_flight(const char *mode) {
    const char *flags[] = { "--fsync", mode, "--send-rate", "100000", NULL };
    CHECK(h_server_start(&S, flags) == 0, "start with --fsync %s", mode);
    h_dev *users[SENDERS + 1];
    uint64_t ids[SENDERS + 1];
    for (int i = 0; i <= SENDERS; i++) {
        users[i] = h_user_new(&S, NULL);
        NEED(users[i]);
        ids[i] = users[i]->id.user_id;
    }
    uint64_t conv = 0;
    NEED(pc_create_group(users[0]->c, "plug", ids + 1, SENDERS, &conv) == 0);
    for (int i = 0; i <= SENDERS; i++) h_dev_disconnect(users[i]);
    CHECK(h_server_stop(&S) >= 0, "clean stop after run 1");

    char journal[400];
    snprintf(journal, sizeof journal, "%s/powerloss.journal", S.dir);
    powerloss_env_set(S.data, journal);
    int restarted = h_server_restart(&S);
    powerloss_env_clear();
    CHECK(restarted == 0, "start under the power-loss library");

    sender *snd = h_calloc(SENDERS, sizeof *snd);
    NEED(snd);
    atomic_size_t total = 0;
    atomic_int stop = 0;
    for (int i = 0; i < SENDERS; i++) {
        pc_options o;
        h_client_options(&S, &o);
        o.max_reconnects = 0;
        snd[i].c = pc_new(&o);
        NEED(snd[i].c && pc_connect(snd[i].c) == 0 && pc_sign_in(snd[i].c, &users[i]->id) == 0);
        snd[i] = (sender){ snd[i].c, users[i]->id.user_id, conv, i, { { 0 } }, 0, &total, &stop };
    }
    pthread_t th[SENDERS];
    int started = 0;
    for (; started < SENDERS; started++)
        if (pthread_create(&th[started], NULL, sender_main, &snd[started]) != 0) break;
    /* wait (bounded) for enough acknowledgements, then pull the plug mid-flight */
    int enough = h_pump(NULL, 0, pred_total, &total, WAIT_MS);
    h_server_kill9(&S);
    atomic_store(&stop, 1);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    size_t acked = atomic_load(&total);
    for (int i = 0; i < SENDERS; i++) pc_free(snd[i].c);
    CHECK(started == SENDERS, "threads");
    CHECK(enough, "only %zu messages acknowledged within %d ms", acked, WAIT_MS);

    powerloss_report rep;
    char why[512];
    CHECK(powerloss_recover(S.data, journal, &rep, why, sizeof why) == 0, "recover: %s", why);
    CHECK(h_server_restart(&S) == 0, "restart after the power loss");
    NEED(h_dev_reconnect(&S, users[0], 0) == 0);
    size_t nh = 0;
    h_event *hist = h_history_all(users[0], conv, &nh);
    CHECK(hist, "history");
    size_t missing = 0, twice = 0, out_of_order = 0, kept = 0;
    for (int i = 0; i < SENDERS; i++) {
        uint64_t prev = 0;
        for (size_t k = 0; k < snd[i].n_acked; k++) {
            const h_sent *a = &snd[i].acked[k];
            int times = 0;
            for (size_t j = 0; j < nh; j++)
                if (hist[j].seq == a->seq && hist[j].sender_user_id == a->sender && h_event_body_is(&hist[j], a->text))
                    times++;
            if (times == 0 && missing++ < 3)
                fprintf(stderr, "  acknowledged '%s' (seq %llu) lost\n", a->text, (unsigned long long)a->seq);
            if (times > 1) twice++;
            if (a->seq <= prev) out_of_order++;
            prev = a->seq;
        }
    }
    for (size_t j = 0; j < nh; j++)
        if (hist[j].type != PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP) kept++;
    h_events_free(hist, nh);
    fprintf(stderr, "  [%s mid-flight] %zu acknowledged before the plug, %zu messages after it (%llu unsynced bytes dropped, %zu file syncs)\n",
            mode, acked, kept, (unsigned long long)rep.bytes_dropped, rep.syncs);
    CHECK(missing == 0, "--fsync %s: %zu of %zu acknowledged messages lost in the power loss", mode, missing, acked);
    CHECK(twice == 0 && out_of_order == 0, "%zu twice, %zu out of order", twice, out_of_order);
    CHECK(kept >= acked, "history has %zu messages, fewer than the %zu acknowledged", kept, acked);
    h_free(snd);
    for (int i = 0; i <= SENDERS; i++) h_dev_free(users[i]);
    h_server_destroy(&S);
}

static void power_loss_mid_flight_batch(void) {
    power_loss_mid_flight("batch");
    h_server_destroy(&S);
}

static void power_loss_mid_flight_always(void) {
    power_loss_mid_flight("always");
    h_server_destroy(&S);
}

/* One-time pre-keys across kill -9 and restart (the page cache survives:
 * this is about the server's own state, e.g. a key reloaded or cached). */
static void prekeys_once_across_kill9(void) {
    const char *flags[] = { "--fsync", "batch", NULL };
    CHECK(h_server_start(&S, flags) == 0, "start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    NEED(h_accept(b, conv) == 0);   /* past the message-request bound on key claims */
    NEED(upload_keys(b, 2, KEYS) == 0);
    uint32_t claimed[MAX_CLAIMS];
    size_t n_claimed = 0;
    for (int i = 0; i < KEYS / 3; i++) {
        uint32_t id = 0;
        CHECK(claim(a, b, 2, &id, NULL) == 1, "claim %d", i);
        CHECK(!in(claimed, n_claimed, id), "key %u handed out twice before the crash", id);
        claimed[n_claimed++] = id;
    }
    h_server_kill9(&S);
    CHECK(h_server_restart(&S) == 0, "restart");
    NEED(h_dev_reconnect(&S, a, 0) == 0);
    CHECK(drain_keys_exactly_once(a, b, 2, KEYS, claimed, n_claimed) == 0,
          "one-time pre-keys not handed out exactly once across kill -9");
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

int main(void) {
    RUN(power_loss_fsync_always);
    RUN(power_loss_fsync_batch);
    RUN(power_loss_fsync_off_loses_acked);
    RUN(power_loss_mid_flight_batch);
    RUN(power_loss_mid_flight_always);
    RUN(prekeys_once_across_kill9);
    CHECK_EXIT();
}
