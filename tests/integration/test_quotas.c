/* test_quotas.c -- every write has a quota and one user cannot stall the
 * write path for others:
 *   - the send limit is the device's, over all its connections, and the
 *     user's, over all its devices;
 *   - a user flooding writes (CreateLinkToken, limits lifted so only its
 *     share of the writer queue holds it) does not make another user's
 *     sends fail while the flood runs;
 *   - link tokens: outstanding ones capped per user, expired ones deleted;
 *   - device-message queues capped per device and per sender, so a victim
 *     always reaches SyncDone and its envelopes;
 *   - AckDeviceMessages that do not advance are not written.
 * Raw connections (h_raw_* in the harness) where a test needs every
 * answer's status, which libparley would hide by retrying. */
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../check.h"
#include "harness.h"

static h_server S;

/* Raw connections (h_raw_*) with this test's bounds: 30 s for each read
 * (a busy shared machine), up to 10000 frames before an awaited Response. */
enum { IO_TIMEOUT_MS = 30000, RESPONSE_MAX_FRAMES = 10000 };

/* A raw connection signed in as an existing device. 0 or -1. */
static int raw_sign_in(h_raw *w, const pc_identity *id) {
    const h_raw_opts o = { .io_ms = IO_TIMEOUT_MS };
    return h_raw_open_port(S.port, &o, w) == 0 && h_raw_sign_in(w, id) == 0 ? 0 : -1;
}

static void fill_send(Parley__V1__Frame *f, Parley__V1__SendMessage *sm, uint64_t rid, uint64_t conv,
                      char *id_buf, size_t id_cap, const char *tag) {
    parley__v1__frame__init(f);
    parley__v1__send_message__init(sm);
    snprintf(id_buf, id_cap, "%s-%llu", tag, (unsigned long long)rid);
    sm->conversation_id = conv;
    sm->client_msg_id.data = (uint8_t *)id_buf;
    sm->client_msg_id.len = strlen(id_buf);
    sm->type = PARLEY__V1__MESSAGE_TYPE__TEXT;
    sm->body.data = (uint8_t *)"x";
    sm->body.len = 1;
    f->request_id = rid;
    f->body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f->send_message = sm;
}

/* Pipelines per_conn sends on each of conns[0..n), then reads every
 * answer: *ok and *limited count OK and RATE_LIMITED; anything else fails.
 * *elapsed_ms: from the first send to the last answer. 0 or -1. */
static int pipelined_sends(h_raw *conns, size_t n, int per_conn, uint64_t conv, int *ok, int *limited,
                           uint64_t *elapsed_ms) {
    *ok = *limited = 0;
    uint64_t t0 = h_now_ms();
    for (size_t c = 0; c < n; c++) {
        for (int k = 0; k < per_conn; k++) {
            Parley__V1__Frame f;
            Parley__V1__SendMessage sm;
            char id[64], tag[24];
            snprintf(tag, sizeof tag, "c%zu", c);
            fill_send(&f, &sm, (uint64_t)(100 + k), conv, id, sizeof id, tag);
            if (h_raw_send_frame(&conns[c], &f) != 0) return -1;
        }
    }
    /* refusals come from the worker at once, acks from the writer later:
     * answers arrive out of request order */
    for (size_t c = 0; c < n; c++) {
        int answered = 0;
        while (answered < per_conn) {
            Parley__V1__Frame *r = h_raw_next_frame(&conns[c], NULL);
            if (!r) {
                fprintf(stderr, "  connection %zu: %d of %d answers (close %d, eof %d)\n", c, answered,
                        per_conn, conns[c].close_code, conns[c].eof);
                return -1;
            }
            int st = r->body_case == PARLEY__V1__FRAME__BODY_RESPONSE ? (int)r->response->status : -2;
            parley__v1__frame__free_unpacked(r, NULL);
            if (st == -2) continue;
            answered++;
            if (st == PARLEY__V1__STATUS__OK) (*ok)++;
            else if (st == PARLEY__V1__STATUS__RATE_LIMITED) (*limited)++;
            else {
                fprintf(stderr, "  connection %zu: an answer with status %d\n", c, st);
                return -1;
            }
        }
    }
    *elapsed_ms = h_now_ms() - t0;
    return 0;
}

/* ----------------------------------------------------------------- tests */

/* --send-rate 2 (bursts of 4), per-user limit lifted: eight connections of
 * one device together get the device's burst plus what the rate earned
 * while they sent, not eight bursts. */
static void send_limit_is_per_device_across_connections(void) {
    const char *flags[] = {"--send-rate", "2", "--user-send-rate", "100000", "--workers", "2", NULL};
    CHECK(h_server_start(&S, flags) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    CHECK(a && b, "users");
    uint64_t conv = 0;
    CHECK(pc_open_direct(a->c, b->id.user_id, &conv) == 0, "direct: %s", pc_error(a->c));
    enum { CONNS = 8, PER_CONN = 4 };
    h_raw *conns = h_calloc(CONNS, sizeof *conns);
    CHECK(conns, "calloc");
    int opened = 0;
    for (int i = 0; i < CONNS; i++) opened += raw_sign_in(&conns[i], &a->id) == 0;
    int ok = 0, limited = 0;
    uint64_t elapsed = 0;
    int r = opened == CONNS ? pipelined_sends(conns, CONNS, PER_CONN, conv, &ok, &limited, &elapsed) : -1;
    for (int i = 0; i < CONNS; i++) h_raw_close(&conns[i]);
    CHECK(opened == CONNS, "only %d of %d connections signed in", opened, CONNS);
    CHECK(r == 0, "sends failed");
    double allowed = 4 + 2.0 * (double)elapsed / 1000.0 + 1;
    fprintf(stderr, "  %d of %d sends taken, %d RATE_LIMITED, in %llu ms (device allows %.1f)\n", ok,
            CONNS * PER_CONN, limited, (unsigned long long)elapsed, allowed);
    CHECK(ok >= 4, "the device's burst of 4 was not granted: %d taken", ok);
    CHECK((double)ok <= allowed, "%d sends taken over 8 connections of one device; its bucket allows %.1f", ok,
          allowed);
    h_dev_free(a);
    h_dev_free(b);
    int exit_status = h_server_stop(&S);
    if (exit_status != 0) h_server_log_tail(&S, 40);
    h_server_destroy(&S);
    CHECK(exit_status == 0, "the server did not exit cleanly (status %d)", exit_status);
}

/* --user-send-rate 2 (bursts of 4), device limit lifted: two devices of one
 * user together get the user's burst plus what the rate earned. */
static void send_limit_per_user_across_devices(void) {
    const char *flags[] = {"--send-rate", "100000", "--user-send-rate", "2", NULL};
    CHECK(h_server_start(&S, flags) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    CHECK(a && b, "users");
    h_dev *a2 = h_device_link(&S, a);
    CHECK(a2, "second device");
    uint64_t conv = 0;
    CHECK(pc_open_direct(a->c, b->id.user_id, &conv) == 0, "direct: %s", pc_error(a->c));
    h_raw *conns = h_calloc(2, sizeof *conns);
    CHECK(conns, "calloc");
    int opened = (raw_sign_in(&conns[0], &a->id) == 0) + (raw_sign_in(&conns[1], &a2->id) == 0);
    int ok = 0, limited = 0;
    uint64_t elapsed = 0;
    int r = opened == 2 ? pipelined_sends(conns, 2, 8, conv, &ok, &limited, &elapsed) : -1;
    h_raw_close(&conns[0]);
    h_raw_close(&conns[1]);
    CHECK(opened == 2, "raw sign-in failed");
    CHECK(r == 0, "sends failed");
    double allowed = 4 + 2.0 * (double)elapsed / 1000.0 + 1;
    fprintf(stderr, "  %d of 16 sends taken, %d RATE_LIMITED, in %llu ms (user allows %.1f)\n", ok, limited,
            (unsigned long long)elapsed, allowed);
    CHECK(ok >= 4, "the user's burst of 4 was not granted: %d taken", ok);
    CHECK((double)ok <= allowed, "%d sends taken from two devices of one user; its bucket allows %.1f", ok,
          allowed);
    h_dev_free(a);
    h_dev_free(a2);
    h_dev_free(b);
    int exit_status = h_server_stop(&S);
    if (exit_status != 0) h_server_log_tail(&S, 40);
    h_server_destroy(&S);
    CHECK(exit_status == 0, "the server did not exit cleanly (status %d)", exit_status);
}

/* ------------------------------------------------------------- the flood */

enum {
    FLOOD_CONNS = 4,
    FLOOD_WINDOW = 20000,      /* requests a flood connection has unanswered */
    FLOOD_CHUNK = 500,         /* frames per send() */
    FLOOD_MAX = 5000000,       /* requests per connection: a bound, never reached */
    FLOOD_MAX_MS = 180000,
    VICTIM_SENDS = 20,
};

typedef struct flood_conn {
    h_raw ws;
    pthread_t writer, reader;
    atomic_ulong sent, answered, ok, limited, unavailable, other;
    atomic_int ended_alone;    /* stopped by itself: error, close or a bound */
    atomic_int stop;
} flood_conn;

static void *flood_write(void *arg) {
    flood_conn *fc = arg;
    uint8_t one[64];
    Parley__V1__CreateLinkToken lt = PARLEY__V1__CREATE_LINK_TOKEN__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 7;
    f.body_case = PARLEY__V1__FRAME__BODY_CREATE_LINK_TOKEN;
    f.create_link_token = &lt;
    size_t n = h_raw_pack_frame(&f, one, sizeof one);
    uint8_t *chunk = malloc(n * FLOOD_CHUNK);
    if (!chunk || n == 0) {
        atomic_store(&fc->ended_alone, 1);
        free(chunk);
        return NULL;
    }
    for (int i = 0; i < FLOOD_CHUNK; i++) memcpy(chunk + (size_t)i * n, one, n);
    uint64_t deadline = h_now_ms() + FLOOD_MAX_MS;
    while (!atomic_load(&fc->stop)) {
        if (atomic_load(&fc->sent) >= FLOOD_MAX || h_now_ms() > deadline) {
            atomic_store(&fc->ended_alone, 1);
            break;
        }
        if (atomic_load(&fc->sent) - atomic_load(&fc->answered) + FLOOD_CHUNK > FLOOD_WINDOW) {
            h_sleep_ms(1);
            continue;
        }
        if (h_raw_send_bytes(&fc->ws, chunk, n * FLOOD_CHUNK) != 0) {
            if (!atomic_load(&fc->stop)) atomic_store(&fc->ended_alone, 1);
            break;
        }
        atomic_fetch_add(&fc->sent, FLOOD_CHUNK);
        /* ~100k requests a second per connection: far past what the
         * writer drains (a commit each), gentler on a shared machine */
        h_sleep_ms(5);
    }
    free(chunk);
    return NULL;
}

static void *flood_read(void *arg) {
    flood_conn *fc = arg;
    while (!atomic_load(&fc->stop)) {
        Parley__V1__Frame *r = h_raw_next_frame(&fc->ws, NULL);
        if (!r) {
            /* a quiet 30 s (nothing outstanding) is fine; EOF or close is not */
            if (fc->ws.eof || fc->ws.close_code) {
                if (!atomic_load(&fc->stop)) atomic_store(&fc->ended_alone, 1);
                break;
            }
            continue;
        }
        if (r->body_case == PARLEY__V1__FRAME__BODY_RESPONSE) {
            int st = r->response->status;
            if (st == PARLEY__V1__STATUS__OK) atomic_fetch_add(&fc->ok, 1);
            else if (st == PARLEY__V1__STATUS__RATE_LIMITED) atomic_fetch_add(&fc->limited, 1);
            else if (st == PARLEY__V1__STATUS__UNAVAILABLE) atomic_fetch_add(&fc->unavailable, 1);
            else atomic_fetch_add(&fc->other, 1);
            atomic_fetch_add(&fc->answered, 1);
        }
        parley__v1__frame__free_unpacked(r, NULL);
    }
    return NULL;
}

static unsigned long flood_answered(flood_conn *fl) {
    unsigned long n = 0;
    for (int i = 0; i < FLOOD_CONNS; i++) n += atomic_load(&fl[i].answered);
    return n;
}

static int flood_ended(flood_conn *fl) {
    int n = 0;
    for (int i = 0; i < FLOOD_CONNS; i++) n += atomic_load(&fl[i].ended_alone);
    return n;
}

/* Every write bucket lifted, so only the flooder's share of the writer
 * queue stands between its four pipelining connections and the queue that
 * every user's writes wait in. The victim's sends, one after another, must
 * each be answered OK (never UNAVAILABLE or RATE_LIMITED), all while the
 * flood is still running. */
static void write_flood_does_not_fail_another_users_sends(void) {
    const char *flags[] = {"--write-rate", "1000000", "--user-write-rate", "1000000", NULL};
    CHECK(h_server_start(&S, flags) == 0, "server did not start");
    h_dev *flooder = h_user_new(&S, NULL), *victim = h_user_new(&S, NULL), *peer = h_user_new(&S, NULL);
    CHECK(flooder && victim && peer, "users");
    uint64_t conv = 0;
    CHECK(pc_open_direct(victim->c, peer->id.user_id, &conv) == 0, "direct: %s", pc_error(victim->c));
    h_raw *v = h_calloc(1, sizeof *v);
    CHECK(v && raw_sign_in(v, &victim->id) == 0, "victim raw sign-in");

    flood_conn *fl = h_calloc(FLOOD_CONNS, sizeof *fl);
    CHECK(fl, "calloc");
    int started = 0;
    for (int i = 0; i < FLOOD_CONNS; i++) {
        if (raw_sign_in(&fl[i].ws, &flooder->id) != 0) break;
        pthread_create(&fl[i].reader, NULL, flood_read, &fl[i]);
        pthread_create(&fl[i].writer, NULL, flood_write, &fl[i]);
        started++;
    }
    /* the flood is on once the server has answered a good part of a window */
    uint64_t deadline = h_now_ms() + 60000;
    while (started == FLOOD_CONNS && flood_answered(fl) < 2 * FLOOD_WINDOW && !flood_ended(fl) &&
           h_now_ms() < deadline)
        h_sleep_ms(10);
    unsigned long answered_before = flood_answered(fl);

    int victim_ok = 0, victim_bad = -1;
    uint64_t slowest_ms = 0, victim_t0 = h_now_ms();   /* printed, never asserted */
    for (int i = 0; i < VICTIM_SENDS && started == FLOOD_CONNS; i++) {
        Parley__V1__Frame f;
        Parley__V1__SendMessage sm;
        char id[48];
        fill_send(&f, &sm, (uint64_t)(1000 + i), conv, id, sizeof id, "victim");
        uint64_t t = h_now_ms();
        int st = h_raw_send_frame(v, &f) == 0
                     ? h_raw_await_response(v, (uint64_t)(1000 + i), RESPONSE_MAX_FRAMES, NULL)
                     : -1;
        if (h_now_ms() - t > slowest_ms) slowest_ms = h_now_ms() - t;
        if (st != PARLEY__V1__STATUS__OK) {
            victim_bad = st;
            break;
        }
        victim_ok++;
    }
    fprintf(stderr, "  victim: %d sends in %llu ms, slowest %llu ms\n", victim_ok,
            (unsigned long long)(h_now_ms() - victim_t0), (unsigned long long)slowest_ms);
    int ended_during = flood_ended(fl);
    unsigned long answered_after = flood_answered(fl);
    double refused = 0;
    h_metric(&S, "parley_writer_share_refused_total", &refused);

    unsigned long f_ok = 0, f_limited = 0, f_unavailable = 0, f_other = 0;
    for (int i = 0; i < started; i++) {
        atomic_store(&fl[i].stop, 1);
        shutdown(fl[i].ws.fd, SHUT_RDWR);
        pthread_join(fl[i].writer, NULL);
        pthread_join(fl[i].reader, NULL);
        f_ok += atomic_load(&fl[i].ok);
        f_limited += atomic_load(&fl[i].limited);
        f_unavailable += atomic_load(&fl[i].unavailable);
        f_other += atomic_load(&fl[i].other);
    }
    for (int i = 0; i < FLOOD_CONNS; i++) h_raw_close(&fl[i].ws);
    h_raw_close(v);
    fprintf(stderr,
            "  flood: %lu answered before the victim's sends, %lu after; OK %lu, RATE_LIMITED %lu, "
            "UNAVAILABLE %lu, other %lu; share refusals %.0f\n",
            answered_before, answered_after, f_ok, f_limited, f_unavailable, f_other, refused);
    CHECK(started == FLOOD_CONNS, "only %d flood connections started", started);
    CHECK(victim_ok == VICTIM_SENDS, "victim send %d answered with status %d during the flood", victim_ok,
          victim_bad);
    CHECK(ended_during == 0, "the flood stopped (%d connections) before the victim's sends completed",
          ended_during);
    CHECK(answered_after > answered_before, "the flood made no progress during the victim's sends");
    CHECK(f_limited > 0 && refused > 0, "the flooder was never held to its writer share (%lu, %.0f)", f_limited,
          refused);
    h_dev_free(flooder);
    h_dev_free(victim);
    h_dev_free(peer);
    int exit_status = h_server_stop(&S);
    if (exit_status != 0) h_server_log_tail(&S, 40);
    h_server_destroy(&S);
    CHECK(exit_status == 0, "the server did not exit cleanly (status %d)", exit_status);
}

/* ----------------------------------------------------------- link tokens */

/* Waits (bounded) until metric reaches want; its last value. */
static double wait_metric(const char *name, double want, int timeout_ms) {
    double v = -1;
    uint64_t deadline = h_now_ms() + (uint64_t)timeout_ms;
    do {
        if (h_metric(&S, name, &v) == 0 && v >= want) break;
        h_sleep_ms(100);
    } while (h_now_ms() < deadline);
    return v;
}

static int register_with(const char *token) {
    pc_options o;
    h_client_options(&S, &o);
    o.max_reconnects = 0;
    pc_client *c = pc_new(&o);
    if (!c) return -1;
    pc_identity id;
    pc_identity_generate(&id);
    int st = pc_connect(c) != 0 ? -1 : pc_register_device(c, token, &id) == 0 ? 0 : pc_status(c);
    pc_free(c);
    return st;
}

/* --link-tokens-per-user 3: the fourth and fifth token replace the two
 * oldest, which no longer link a device; the newest does. With a 2 s TTL
 * the two left over are deleted once expired (nobody makes another). */
static void link_tokens_capped_and_expired_deleted(void) {
    const char *flags[] = {"--link-tokens-per-user", "3", "--link-token-ttl", "2s", NULL};
    CHECK(h_server_start(&S, flags) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL);
    CHECK(a, "user");
    char tokens[5][256];
    for (int i = 0; i < 5; i++) {
        uint64_t exp = 0;
        CHECK(pc_create_link_token(a->c, tokens[i], sizeof tokens[i], &exp) == 0, "token %d: %s", i,
              pc_error(a->c));
    }
    int oldest = register_with(tokens[0]);
    CHECK(oldest == PARLEY__V1__STATUS__UNAUTHENTICATED, "the oldest of 5 tokens (cap 3) still linked a device (%d)",
          oldest);
    CHECK(register_with(tokens[4]) == 0, "the newest token did not link a device");
    double replaced = wait_metric("parley_link_tokens_replaced_total", 2, 1000);
    CHECK(replaced == 2, "parley_link_tokens_replaced_total %.0f, want 2", replaced);
    /* tokens[2] and [3] are left (tokens[4] was used); both expire after 2 s */
    double expired = wait_metric("parley_link_tokens_expired_total", 2, 60000);
    CHECK(expired == 2, "parley_link_tokens_expired_total %.0f, want 2", expired);
    CHECK(register_with(tokens[3]) == PARLEY__V1__STATUS__UNAUTHENTICATED, "an expired token linked a device");
    h_dev_free(a);
    int exit_status = h_server_stop(&S);
    if (exit_status != 0) h_server_log_tail(&S, 40);
    h_server_destroy(&S);
    CHECK(exit_status == 0, "the server did not exit cleanly (status %d)", exit_status);
}

/* ------------------------------------------------------- device messages */

static void count_device_message(void *ud, const Parley__V1__DeviceMessage *m) {
    (void)m;
    (*(size_t *)ud)++;
}

enum { ENVELOPE = 65536 };

/* Sends 64 KiB envelopes from d to (user, device) until one is refused, at
 * most max: how many were taken; *refusal the refusing status (0: none). */
static int fill_queue(h_dev *d, uint64_t user, uint32_t device, int max, int *refusal) {
    static uint8_t body[ENVELOPE];
    int taken = 0;
    *refusal = 0;
    for (int i = 0; i < max; i++) {
        if (pc_send_device_message(d->c, user, device, body, sizeof body, NULL) != 0) {
            *refusal = pc_status(d->c);
            break;
        }
        taken++;
    }
    return taken;
}

/* A stranger (anyone who shares a conversation) sends 64 KiB envelopes to
 * the victim's device until refused, then five more users do the same:
 * the per-sender share stops each, the per-device cap stops the rest. The
 * victim then syncs and reaches SyncDone with every envelope taken and a
 * message waiting in its inbox. */
static void device_queue_capped_victim_reaches_sync_done(void) {
    const char *flags[] = {"--write-rate", "1000", NULL};
    CHECK(h_server_start(&S, flags) == 0, "server did not start");
    h_dev *victim = h_user_new(&S, NULL);
    CHECK(victim, "victim");
    enum { SENDERS = 6, TRIES = 300 };
    h_dev *senders[SENDERS] = {0};
    int taken[SENDERS], refusal[SENDERS], total = 0;
    uint64_t conv = 0;
    for (int i = 0; i < SENDERS; i++) {
        senders[i] = h_user_new(&S, NULL);
        CHECK(senders[i], "sender %d", i);
        CHECK(pc_open_direct(senders[i]->c, victim->id.user_id, &conv) == 0, "direct: %s",
              pc_error(senders[i]->c));
        taken[i] = fill_queue(senders[i], victim->id.user_id, victim->id.device_id, TRIES, &refusal[i]);
        fprintf(stderr, "  sender %d: %d envelopes of 64 KiB taken, then status %d\n", i, taken[i], refusal[i]);
        total += taken[i];
    }
    CHECK(taken[0] < TRIES && refusal[0] == PARLEY__V1__STATUS__TOO_LARGE,
          "one stranger queued %d envelopes of 64 KiB (refusal %d)", taken[0], refusal[0]);
    /* defaults: 1 MiB a device, a quarter of it per sending user */
    CHECK((size_t)taken[0] * ENVELOPE <= (1u << 20) / 4, "one stranger filled %d x 64 KiB, over a quarter of the queue",
          taken[0]);
    CHECK(refusal[SENDERS - 1] == PARLEY__V1__STATUS__TOO_LARGE, "the last sender was not refused (%d)",
          refusal[SENDERS - 1]);
    CHECK((size_t)total * ENVELOPE <= (1u << 20), "%d x 64 KiB queued for one device, over 1 MiB", total);
    uint64_t seq = h_send(senders[SENDERS - 1], conv, "after the envelopes");
    CHECK(seq > 0, "message to the victim");

    size_t received = 0;
    pc_on_device_message(victim->c, count_device_message, &received);
    CHECK(h_dev_sync(victim, 60000) == 0, "the victim never reached SyncDone (%zu envelopes seen)", received);
    CHECK(received == (size_t)total, "victim got %zu envelopes at sync, %d were taken", received, total);
    h_count_goal g = {.devs = &victim, .n = 1, .conv = conv, .want = 1, .no_membership = 1};
    CHECK(h_pump(&victim, 1, h_pred_count, &g, 30000), "the victim's message did not arrive");
    CHECK(h_dev_has(victim, conv, seq) == 1, "seq %llu not delivered once", (unsigned long long)seq);
    h_dev_free(victim);
    for (int i = 0; i < SENDERS; i++) h_dev_free(senders[i]);
    int exit_status = h_server_stop(&S);
    if (exit_status != 0) h_server_log_tail(&S, 40);
    h_server_destroy(&S);
    CHECK(exit_status == 0, "the server did not exit cleanly (status %d)", exit_status);
}

/* AckDeviceMessages: 200 acks that do not advance past the first are not
 * written, and the one that is costs one commit, not one each. */
static void device_acks_not_advancing_are_not_written(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL);
    CHECK(a, "user");
    h_raw *w = h_calloc(1, sizeof *w);
    CHECK(w && raw_sign_in(w, &a->id) == 0, "raw sign-in");
    double commits0 = 0, coalesced = 0, commits1 = 0;
    CHECK(h_metric(&S, "parley_store_commits_total", &commits0) == 0, "metric");
    enum { ACKS = 200 };
    int sent = 0;
    for (int i = 0; i < ACKS; i++) {
        Parley__V1__AckDeviceMessages ack = PARLEY__V1__ACK_DEVICE_MESSAGES__INIT;
        ack.up_to = 5;
        Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
        f.body_case = PARLEY__V1__FRAME__BODY_ACK_DEVICE_MESSAGES;
        f.ack_device_messages = &ack;
        sent += h_raw_send_frame(w, &f) == 0;
    }
    /* a request answered after them: the acks before it have been handled */
    Parley__V1__CreateLinkToken lt = PARLEY__V1__CREATE_LINK_TOKEN__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 9;
    f.body_case = PARLEY__V1__FRAME__BODY_CREATE_LINK_TOKEN;
    f.create_link_token = &lt;
    int st = h_raw_send_frame(w, &f) == 0 ? h_raw_await_response(w, 9, RESPONSE_MAX_FRAMES, NULL) : -1;
    h_raw_close(w);
    CHECK(sent == ACKS && st == PARLEY__V1__STATUS__OK, "sent %d acks, then status %d", sent, st);
    CHECK(h_metric(&S, "parley_store_commits_total", &commits1) == 0, "metric");
    h_metric(&S, "parley_device_acks_coalesced_total", &coalesced);
    fprintf(stderr, "  %d acks: %.0f commits (with the link token's), %.0f not written\n", ACKS,
            commits1 - commits0, coalesced);
    /* one for the first ack, one for the link token; a few spare for
     * anything else the server commits meanwhile */
    CHECK(commits1 - commits0 <= 4, "%.0f store commits for %d identical acks", commits1 - commits0, ACKS);
    CHECK(coalesced >= ACKS - 1, "parley_device_acks_coalesced_total %.0f, want >= %d", coalesced, ACKS - 1);
    h_dev_free(a);
    int exit_status = h_server_stop(&S);
    if (exit_status != 0) h_server_log_tail(&S, 40);
    h_server_destroy(&S);
    CHECK(exit_status == 0, "the server did not exit cleanly (status %d)", exit_status);
}

/* ------------------------------------------------------ every write kind */

/* --write-rate 1 (bursts of 2), per-user limit lifted: three of any write
 * pipelined from a fresh device, the third is RATE_LIMITED. What the first
 * two are answered (most are invalid here: NOT_FOUND, BAD_REQUEST, ...)
 * does not matter; they are past the bucket. */
static void every_write_kind_is_rate_limited(void) {
    const char *flags[] = {"--write-rate", "1", "--user-write-rate", "100000", NULL};
    CHECK(h_server_start(&S, flags) == 0, "server did not start");
    Parley__V1__CreateLinkToken lt = PARLEY__V1__CREATE_LINK_TOKEN__INIT;
    Parley__V1__UploadKeys uk = PARLEY__V1__UPLOAD_KEYS__INIT;
    Parley__V1__FetchKeys fk = PARLEY__V1__FETCH_KEYS__INIT;
    Parley__V1__RemoveDevice rd = PARLEY__V1__REMOVE_DEVICE__INIT;
    Parley__V1__SendDeviceMessage sdm = PARLEY__V1__SEND_DEVICE_MESSAGE__INIT;
    Parley__V1__OpenDirect od = PARLEY__V1__OPEN_DIRECT__INIT;
    Parley__V1__CreateGroup cg = PARLEY__V1__CREATE_GROUP__INIT;
    Parley__V1__AddMembers am = PARLEY__V1__ADD_MEMBERS__INIT;
    Parley__V1__RemoveMember rm = PARLEY__V1__REMOVE_MEMBER__INIT;
    Parley__V1__MarkRead mr = PARLEY__V1__MARK_READ__INIT;
    struct { const char *name; Parley__V1__Frame f; } kinds[10];
    for (int i = 0; i < 10; i++) parley__v1__frame__init(&kinds[i].f);
#define KIND(i, label, CASE, field, value) \
    kinds[i].name = label; kinds[i].f.body_case = PARLEY__V1__FRAME__BODY_##CASE; kinds[i].f.field = value
    KIND(0, "CreateLinkToken", CREATE_LINK_TOKEN, create_link_token, &lt);
    KIND(1, "UploadKeys", UPLOAD_KEYS, upload_keys, &uk);
    KIND(2, "FetchKeys", FETCH_KEYS, fetch_keys, &fk);
    KIND(3, "RemoveDevice", REMOVE_DEVICE, remove_device, &rd);
    KIND(4, "SendDeviceMessage", SEND_DEVICE_MESSAGE, send_device_message, &sdm);
    KIND(5, "OpenDirect", OPEN_DIRECT, open_direct, &od);
    KIND(6, "CreateGroup", CREATE_GROUP, create_group, &cg);
    KIND(7, "AddMembers", ADD_MEMBERS, add_members, &am);
    KIND(8, "RemoveMember", REMOVE_MEMBER, remove_member, &rm);
    KIND(9, "MarkRead", MARK_READ, mark_read, &mr);
#undef KIND
    h_raw *w = h_calloc(1, sizeof *w);
    CHECK(w, "calloc");
    int unlimited = -1;
    for (int i = 0; i < 10 && unlimited < 0; i++) {
        h_dev *d = h_user_new(&S, NULL);
        CHECK(d, "user");
        int ok = raw_sign_in(w, &d->id) == 0;
        int st[3] = {-1, -1, -1};
        for (int k = 0; ok && k < 3; k++) {
            kinds[i].f.request_id = (uint64_t)(10 + k);
            ok = h_raw_send_frame(w, &kinds[i].f) == 0;
        }
        /* answers may come out of order: refusals at once, the rest from the writer */
        for (int n = 0; ok && n < 3; n++) {
            Parley__V1__Frame *r = h_raw_next_frame(w, NULL);
            if (!r) {
                ok = 0;
                break;
            }
            if (r->body_case == PARLEY__V1__FRAME__BODY_RESPONSE && r->request_id >= 10 && r->request_id < 13)
                st[r->request_id - 10] = (int)r->response->status;
            else n--;
            parley__v1__frame__free_unpacked(r, NULL);
        }
        h_raw_close(w);
        h_dev_free(d);
        CHECK(ok, "%s: no answers (close %d, eof %d)", kinds[i].name, w->close_code, w->eof);
        int limited = (st[0] == PARLEY__V1__STATUS__RATE_LIMITED) + (st[1] == PARLEY__V1__STATUS__RATE_LIMITED) +
                      (st[2] == PARLEY__V1__STATUS__RATE_LIMITED);
        fprintf(stderr, "  %-18s %d %d %d\n", kinds[i].name, st[0], st[1], st[2]);
        if (limited != 1 || st[2] != PARLEY__V1__STATUS__RATE_LIMITED) unlimited = i;
    }
    CHECK(unlimited < 0, "%s: three in a row against a bucket of 2, the third not RATE_LIMITED",
          kinds[unlimited].name);
    int exit_status = h_server_stop(&S);
    if (exit_status != 0) h_server_log_tail(&S, 40);
    h_server_destroy(&S);
    CHECK(exit_status == 0, "the server did not exit cleanly (status %d)", exit_status);
}

/* argv[1]: run only the case of that name */
#define RUN_IF(fn) do { if (argc < 2 || strcmp(argv[1], #fn) == 0) RUN(fn); } while (0)

int main(int argc, char **argv) {
    if (sodium_init() < 0) return 1;
    RUN_IF(send_limit_is_per_device_across_connections);
    RUN_IF(send_limit_per_user_across_devices);
    RUN_IF(write_flood_does_not_fail_another_users_sends);
    RUN_IF(link_tokens_capped_and_expired_deleted);
    RUN_IF(device_queue_capped_victim_reaches_sync_done);
    RUN_IF(device_acks_not_advancing_are_not_written);
    RUN_IF(every_write_kind_is_rate_limited);
    CHECK_EXIT();
}
