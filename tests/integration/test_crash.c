/* test_crash.c -- failure tests: kill -9 of the server right after acks
 * (--fsync batch and always), restart on the same data dir: every
 * acknowledged message is in history and reaches the recipient by sync,
 * no seq is reused, fan-out replay delivers what was acknowledged but not
 * yet delivered with no duplicate at the device; client_msg_id dedupe holds
 * within a connection, across a reconnect with kill -9, and across a
 * graceful restart. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../check.h"
#include "harness.h"

enum { WAIT_MS = 30000 };

#define NEED(x) CHECK((x), "%s", #x)

static h_server S;

static int start_with(const char *fsync_mode) {
    /* hundreds of sends from one device: above the default per-device limit */
    const char *flags[] = { "--fsync", fsync_mode, "--send-rate", "100000", NULL };
    if (h_server_start(&S, flags) != 0) {
        fprintf(stderr, "  server with --fsync %s did not start\n", fsync_mode);
        return -1;
    }
    return 0;
}

/* The whole scenario for one fsync mode. */
static void kill9_after_acks(const char *mode, int n_msgs) {
    CHECK(start_with(mode) == 0, "start");
    h_dev *a = h_user_new(&S, NULL), *b1 = h_user_new(&S, NULL);
    NEED(a && b1);
    h_dev *b2 = h_device_link(&S, b1); /* stays offline until after the crash */
    NEED(b2);
    h_dev_disconnect(b2);
    NEED(h_dev_sync(b1, WAIT_MS) == 0);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b1->id.user_id, &conv) == 0);
    NEED(h_accept(b1, conv) == 0);   /* not a message request: no bound on a's sends */

    h_sent *exp = h_calloc((size_t)n_msgs + 8, sizeof *exp);
    NEED(exp);
    size_t n = 0;
    char text[64];
    for (int i = 0; i < n_msgs; i++) {
        snprintf(text, sizeof text, "%s crash %d", mode, i);
        CHECK(h_send_rec(a, conv, text, exp, &n) == 0, "send %d failed", i);
        if (i % 16 == 0) pc_poll(b1->c, 0); /* b1 consumes part of it live */
    }
    h_server_kill9(&S); /* immediately after the last ack */
    size_t live_before = h_dev_count(b1, conv);
    fprintf(stderr, "  [%s] b1 had %zu of %zu messages when the server was killed\n", mode,
            live_before, n);
    CHECK(h_server_restart(&S) == 0, "restart on the same data dir failed");

    /* no seq reused: a new send (same client, transparent reconnect) goes above */
    uint64_t max_acked = exp[n - 1].seq;
    CHECK(h_send_rec(a, conv, "after restart", exp, &n) == 0, "send after restart failed");
    CHECK(exp[n - 1].seq > max_acked, "seq %llu after restart reuses (max acked was %llu)",
          (unsigned long long)exp[n - 1].seq, (unsigned long long)max_acked);

    /* history holds every acknowledged message once */
    size_t nh = 0;
    h_event *hist = h_history_all(a, conv, &nh);
    CHECK(hist, "history after restart failed");
    size_t texts = 0, missing = 0;
    uint64_t dup_seq = 0;
    for (size_t i = 0; i < nh; i++) {
        if (i && hist[i].seq == hist[i - 1].seq) dup_seq = hist[i].seq;
        if (hist[i].type != PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP) texts++;
    }
    for (size_t k = 0; k < n; k++) {
        int found = 0;
        for (size_t i = 0; i < nh; i++)
            if (hist[i].seq == exp[k].seq && hist[i].body_len == strlen(exp[k].text) &&
                memcmp(hist[i].body, exp[k].text, hist[i].body_len) == 0)
                found++;
        if (found != 1) {
            if (missing++ < 3)
                fprintf(stderr, "  history: '%s' (seq %llu) found %d times\n", exp[k].text,
                        (unsigned long long)exp[k].seq, found);
        }
    }
    h_events_free(hist, nh);
    CHECK(missing == 0, "%zu acknowledged messages not in history exactly once", missing);
    CHECK(dup_seq == 0, "history has seq %llu twice", (unsigned long long)dup_seq);
    CHECK(texts == n, "history has %zu messages, %zu were acknowledged", texts, n);

    /* b1 was online: its client reconnects by itself and resumes from its
     * cursor; every message reaches its callback exactly once, in order
     * (fan-out replay of what was acked but not delivered) */
    h_dev *one[1] = { b1 };
    h_count_goal g = { one, 1, conv, n, 1 };
    h_pump(one, 1, h_pred_count, &g, WAIT_MS);
    char why[4096];
    CHECK(h_expect_exact(b1, conv, exp, n, why, sizeof why) == 0, "online device: %s", why);

    /* b2 was offline the whole time: a first sync gets all of it; on a
     * stable connection the server itself sends no duplicate (the inbox
     * append of a replayed fan-out is idempotent) */
    CHECK(h_dev_reconnect(&S, b2, 0) == 0, "b2 sign-in after restart failed");
    NEED(h_dev_sync(b2, WAIT_MS) == 0);
    h_dev *two[1] = { b2 };
    h_count_goal g2 = { two, 1, conv, n, 1 };
    h_pump(two, 1, h_pred_count, &g2, WAIT_MS);
    CHECK(h_expect_exact(b2, conv, exp, n, why, sizeof why) == 0, "offline device: %s", why);
    pc_stats st;
    pc_get_stats(b2->c, &st);
    CHECK(st.duplicates_dropped == 0,
          "the server sent %llu duplicate events to a fresh device (inbox has duplicates)",
          (unsigned long long)st.duplicates_dropped);

    h_free(exp);
    h_dev_free(a);
    h_dev_free(b1);
    h_dev_free(b2);
    CHECK(h_server_alive(&S), "server died");
    h_server_destroy(&S);
}

static void kill9_after_acks_fsync_batch(void) {
    kill9_after_acks("batch", 300);
    if (S.pid) h_server_destroy(&S);
}

static void kill9_after_acks_fsync_always(void) {
    kill9_after_acks("always", 150);
    if (S.pid) h_server_destroy(&S);
}

/* Several crashes in a row, each right after acks, with sends in between:
 * seqs keep increasing and nothing acknowledged goes missing. */
static void repeated_kill9(void) {
    CHECK(start_with("batch") == 0, "start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    NEED(h_accept(b, conv) == 0);   /* not a message request: no bound on a's sends */
    h_sent exp[64];
    size_t n = 0;
    char text[64];
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 10; i++) {
            snprintf(text, sizeof text, "round %d msg %d", round, i);
            CHECK(h_send_rec(i % 2 ? b : a, conv, text, exp, &n) == 0, "send failed (round %d)",
                  round);
            if (n > 1)
                CHECK(exp[n - 1].seq > exp[n - 2].seq, "seq %llu not above %llu (round %d)",
                      (unsigned long long)exp[n - 1].seq, (unsigned long long)exp[n - 2].seq,
                      round);
        }
        h_server_kill9(&S);
        CHECK(h_server_restart(&S) == 0, "restart %d failed", round);
    }
    h_dev *br = h_dev_for_identity(&S, &b->id, "b(resync)", 0);
    CHECK(br, "resync sign-in failed");
    NEED(h_dev_sync(br, WAIT_MS) == 0);
    h_dev *one[1] = { br };
    h_count_goal g = { one, 1, conv, n, 1 };
    h_pump(one, 1, h_pred_count, &g, WAIT_MS);
    char why[4096];
    CHECK(h_expect_exact(br, conv, exp, n, why, sizeof why) == 0, "%s", why);
    h_dev_free(br);
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

static void idempotent_send(pc_client *c, uint64_t conv, const uint8_t *id, size_t id_len,
                            const char *body, uint64_t *seq, int *dup, int *rc) {
    pc_send_args a = { .conversation_id = conv, .type = PARLEY__V1__MESSAGE_TYPE__TEXT,
                       .body = body, .body_len = strlen(body),
                       .client_msg_id = id, .client_msg_id_len = id_len };
    *seq = 0;
    *dup = -1;
    *rc = pc_send(c, &a, seq, NULL, dup);
}

static void client_msg_id_dedupe(void) {
    CHECK(start_with("batch") == 0, "start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    NEED(h_accept(b, conv) == 0);   /* not a message request: no bound on a's sends */
    uint8_t id[16];
    for (int i = 0; i < 16; i++) id[i] = (uint8_t)(0xA0 + i);
    uint64_t s1, s;
    int dup, rc;

    idempotent_send(a->c, conv, id, sizeof id, "once", &s1, &dup, &rc);
    CHECK(rc == 0 && s1 && dup == 0, "first send: rc %d seq %llu duplicate %d (%s)", rc,
          (unsigned long long)s1, dup, pc_error(a->c));
    idempotent_send(a->c, conv, id, sizeof id, "once", &s, &dup, &rc);
    CHECK(rc == 0 && s == s1 && dup == 1, "same id again: rc %d seq %llu (want %llu) dup %d", rc,
          (unsigned long long)s, (unsigned long long)s1, dup);

    /* kill -9 + restart, then the same client resends (transparent reconnect) */
    h_server_kill9(&S);
    CHECK(h_server_restart(&S) == 0, "restart after kill -9 failed");
    idempotent_send(a->c, conv, id, sizeof id, "once", &s, &dup, &rc);
    CHECK(rc == 0 && s == s1 && dup == 1,
          "same id after kill -9: rc %d seq %llu (want %llu) dup %d (%s)", rc,
          (unsigned long long)s, (unsigned long long)s1, dup, pc_error(a->c));

    /* a fresh connection of the same device */
    CHECK(h_dev_reconnect(&S, a, 0) == 0, "reconnect failed");
    idempotent_send(a->c, conv, id, sizeof id, "once", &s, &dup, &rc);
    CHECK(rc == 0 && s == s1 && dup == 1,
          "same id on a new connection: rc %d seq %llu (want %llu) dup %d", rc,
          (unsigned long long)s, (unsigned long long)s1, dup);

    /* graceful restart */
    int st = h_server_stop(&S);
    CHECK(st != -1, "server did not stop on SIGTERM");
    CHECK(h_server_restart(&S) == 0, "restart after SIGTERM failed");
    idempotent_send(a->c, conv, id, sizeof id, "once", &s, &dup, &rc);
    CHECK(rc == 0 && s == s1 && dup == 1,
          "same id after graceful restart: rc %d seq %llu (want %llu) dup %d", rc,
          (unsigned long long)s, (unsigned long long)s1, dup);

    /* a new id is a new message, above */
    uint8_t id2[16];
    memcpy(id2, id, sizeof id2);
    id2[15] ^= 0xFF;
    uint64_t s2;
    idempotent_send(a->c, conv, id2, sizeof id2, "twice", &s2, &dup, &rc);
    CHECK(rc == 0 && s2 > s1 && dup == 0, "new id: rc %d seq %llu dup %d", rc,
          (unsigned long long)s2, dup);
    /* the same id from another user's device is that device's own message */
    uint64_t s3;
    idempotent_send(b->c, conv, id, sizeof id, "b's", &s3, &dup, &rc);
    CHECK(rc == 0 && s3 > s2 && dup == 0, "same id from another device: rc %d seq %llu dup %d",
          rc, (unsigned long long)s3, dup);

    size_t nh = 0;
    h_event *hist = h_history_all(b, conv, &nh);
    CHECK(hist, "history failed");
    int once = 0, texts = 0;
    for (size_t i = 0; i < nh; i++) {
        if (hist[i].type == PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP) continue;
        texts++;
        if (hist[i].body_len == 4 && memcmp(hist[i].body, "once", 4) == 0) once++;
    }
    h_events_free(hist, nh);
    CHECK(once == 1 && texts == 3, "history: 'once' %d times (want 1), %d messages (want 3)",
          once, texts);
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

/* Concurrent senders into a 40-member group (so fan-out has real work per
 * message and lags the acks), kill -9 each time another 400 acks are in,
 * restart, until a restarted server reports in parley_fanout_replayed_total
 * that it fanned out again what the killed one had acknowledged but not
 * fanned out (at most CG_ROUNDS kills). In-flight sends are retried by the
 * clients with the same client_msg_id, and every member's inbox ends with
 * every acknowledged message exactly once, in order. */
enum { CG_USERS = 40, CG_SENDERS = 4, CG_MAX = 4000, CG_KILL_AT = 400, CG_ROUNDS = 8 };

typedef struct cg_sender {
    h_dev *d;
    int index;
    uint64_t seqs[CG_MAX];
    int ks[CG_MAX];
    int n;
    int failures;
} cg_sender;

static uint64_t cg_group;
static atomic_int cg_acked;
static atomic_int cg_stop;

static void *cg_main(void *arg) {
    cg_sender *s = arg;
    char text[64];
    for (int k = 0; k < CG_MAX && !atomic_load(&cg_stop); k++) {
        snprintf(text, sizeof text, "cg t%d m%04d", s->index, k);
        uint64_t seq = 0;
        if (pc_send_text(s->d->c, cg_group, text, &seq) != 0) {
            if (s->failures++ < 3)
                fprintf(stderr, "  sender %d: %s (status %d)\n", s->index, pc_error(s->d->c),
                        pc_status(s->d->c));
            continue;
        }
        s->seqs[s->n] = seq;
        s->ks[s->n] = k;
        s->n++;
        atomic_fetch_add(&cg_acked, 1);
    }
    return NULL;
}

static void kill9_during_concurrent_fanout(void) {
    CHECK(start_with("batch") == 0, "start");
    h_dev *u[CG_USERS];
    for (int i = 0; i < CG_USERS; i++) {
        u[i] = h_user_new(&S, NULL);
        CHECK(u[i], "user %d", i);
    }
    uint64_t members[CG_USERS - 1];
    for (int i = 1; i < CG_USERS; i++) members[i - 1] = u[i]->id.user_id;
    CHECK(pc_create_group(u[0]->c, "crashgroup", members, CG_USERS - 1, &cg_group) == 0,
          "create_group: %s", pc_error(u[0]->c));
    static cg_sender ss[CG_SENDERS];
    memset(ss, 0, sizeof ss);
    atomic_store(&cg_acked, 0);
    atomic_store(&cg_stop, 0);
    pthread_t th[CG_SENDERS];
    for (int i = 0; i < CG_SENDERS; i++) {
        ss[i].d = u[i];
        ss[i].index = i;
        pthread_create(&th[i], NULL, cg_main, &ss[i]);
    }
    int restarted = 1, rounds = 0, at_kill = 0, short_round = 0;
    double replayed = 0;
    while (restarted && replayed == 0 && rounds < CG_ROUNDS && !short_round) {
        int want = at_kill + CG_KILL_AT;
        uint64_t deadline = h_now_ms() + WAIT_MS;
        while (atomic_load(&cg_acked) < want && h_now_ms() < deadline) h_sleep_ms(1);
        h_server_kill9(&S);
        at_kill = atomic_load(&cg_acked);
        short_round = at_kill < want;
        rounds++;
        restarted = h_server_restart(&S) == 0;
        /* the replay runs before the listener opens: final by now */
        if (restarted && h_metric(&S, "parley_fanout_replayed_total", &replayed) != 0) replayed = -1;
    }
    atomic_store(&cg_stop, 1);
    for (int i = 0; i < CG_SENDERS; i++) pthread_join(th[i], NULL);
    CHECK(restarted, "restart failed");
    CHECK(!short_round, "only %d acks before the deadline", at_kill);
    fprintf(stderr, "  %.0f messages replayed by the fan-out after kill %d\n", replayed, rounds);
    CHECK(replayed > 0, "no fan-out replay after %d kills -9 during concurrent sends "
          "(parley_fanout_replayed_total %.0f)", rounds, replayed);
    int failures = 0, total = 0;
    for (int i = 0; i < CG_SENDERS; i++) {
        failures += ss[i].failures;
        total += ss[i].n;
    }
    fprintf(stderr, "  %d acked when killed, %d acked in all (in-flight ones retried)\n", at_kill,
            total);
    CHECK(failures == 0, "%d sends failed across the crash (the clients should retry)", failures);

    /* all acknowledged, sorted by seq */
    h_sent *exp = h_calloc((size_t)total + 1, sizeof *exp);
    NEED(exp);
    size_t n = 0;
    for (int i = 0; i < CG_SENDERS; i++)
        for (int k = 0; k < ss[i].n; k++) {
            exp[n].seq = ss[i].seqs[k];
            exp[n].sender = ss[i].d->id.user_id;
            snprintf(exp[n].text, sizeof exp[n].text, "cg t%d m%04d", i, ss[i].ks[k]);
            n++;
        }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && exp[j].seq < exp[j - 1].seq; j--) {
            h_sent t = exp[j];
            exp[j] = exp[j - 1];
            exp[j - 1] = t;
        }
    for (size_t i = 1; i < n; i++)
        CHECK(exp[i].seq != exp[i - 1].seq, "two acknowledged sends got seq %llu",
              (unsigned long long)exp[i].seq);

    /* every member's inbox, from 0, on a fresh connection: a sender, and
     * members that never sent */
    int check_users[] = { 0, 3, 4, 17, CG_USERS - 1 };
    for (size_t ci = 0; ci < sizeof check_users / sizeof check_users[0]; ci++) {
        h_dev *m = u[check_users[ci]];
        char name[32];
        snprintf(name, sizeof name, "member%d", check_users[ci]);
        h_dev *r = h_dev_for_identity(&S, &m->id, name, 0);
        CHECK(r && h_dev_sync(r, WAIT_MS) == 0, "member %d could not sync", check_users[ci]);
        h_dev *one[1] = { r };
        h_count_goal g = { one, 1, cg_group, n, 1 };
        h_pump(one, 1, h_pred_count, &g, WAIT_MS);
        char why[4096];
        int ok = h_expect_exact(r, cg_group, exp, n, why, sizeof why) == 0;
        pc_stats st;
        pc_get_stats(r->c, &st);
        h_dev_free(r);
        CHECK(ok, "member %d: %s", check_users[ci], why);
        CHECK(st.duplicates_dropped == 0, "member %d: server sent %llu duplicate events",
              check_users[ci], (unsigned long long)st.duplicates_dropped);
    }
    h_free(exp);
    for (int i = 0; i < CG_USERS; i++) h_dev_free(u[i]);
    h_server_destroy(&S);
}

/* SIGTERM stops the server cleanly (exit status 0) and loses nothing. */
static void graceful_stop(void) {
    CHECK(start_with("batch") == 0, "start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    NEED(h_accept(b, conv) == 0);   /* not a message request: no bound on a's sends */
    h_sent exp[32];
    size_t n = 0;
    for (int i = 0; i < 20; i++) {
        char text[32];
        snprintf(text, sizeof text, "graceful %d", i);
        NEED(h_send_rec(a, conv, text, exp, &n) == 0);
    }
    int st = h_server_stop(&S);
    CHECK(st != -1, "server needed SIGKILL after SIGTERM");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status after SIGTERM: 0x%x", st);
    CHECK(h_server_restart(&S) == 0, "restart failed");
    h_dev_disconnect(b);
    CHECK(h_dev_reconnect(&S, b, 0) == 0, "b sign-in failed");
    NEED(h_dev_sync(b, WAIT_MS) == 0);
    h_dev *one[1] = { b };
    h_count_goal g = { one, 1, conv, n, 1 };
    h_pump(one, 1, h_pred_count, &g, WAIT_MS);
    char why[4096];
    CHECK(h_expect_exact(b, conv, exp, n, why, sizeof why) == 0, "%s", why);
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

int main(void) {
    RUN(kill9_after_acks_fsync_batch);
    h_server_destroy(&S);
    RUN(kill9_after_acks_fsync_always);
    h_server_destroy(&S);
    RUN(repeated_kill9);
    h_server_destroy(&S);
    RUN(kill9_during_concurrent_fanout);
    h_server_destroy(&S);
    RUN(client_msg_id_dedupe);
    h_server_destroy(&S);
    RUN(graceful_stop);
    h_server_destroy(&S);
    CHECK_EXIT();
}
