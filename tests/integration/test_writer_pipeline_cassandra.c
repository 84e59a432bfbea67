/* test_writer_pipeline_cassandra.c -- the write path with many commits in
 * flight on a real Cassandra (chat/writer_commit.c): a conversation writer
 * sends a batch without waiting for the previous one, at most one commit
 * per conversation in flight.
 *
 *   many_senders_many_conversations: N_USERS users, each on its own raw
 *     connection, pipeline bursts of sends into N_CONVS groups at once,
 *     round after round: every send is answered exactly once, OK and not a
 *     duplicate; per conversation the seqs acknowledged plus the group's
 *     membership messages are exactly 1..last, each once; history holds
 *     exactly those messages (each client_msg_id once, at its acknowledged
 *     seq); a fresh device of every user syncs each conversation exactly,
 *     in seq order; and commits were in flight together
 *     (parley_writer_commits_in_flight_peak >= 2; rounds go on until they
 *     were, at most ROUNDS_MAX: the server decides what is in which batch).
 *   retry_of_a_send_in_flight: a send and, right behind it, its retry (same
 *     client_msg_id, a second frame), round after round until a retry found
 *     its first attempt's commit in flight
 *     (parley_writer_retries_in_flight_total): both answered with the one
 *     seq, the first not a duplicate and answered first, the retry a
 *     duplicate; seqs consecutive; history holds each id once.
 *   frozen_then_resumed_no_gap: a burst into F_CONVS groups pipelined
 *     right before Cassandra is frozen (SIGSTOP), kept frozen until the
 *     store failed a commit or timed a read out, then SIGCONT: every send is
 *     answered once; after /healthz 200 every send is retried with its id
 *     until OK: an acknowledged one gets its seq back as a duplicate; then
 *     each group's history is 1..last with no gap and every id exactly once
 *     at the seq it was acknowledged with.
 *
 * One node for the program (cassandra_node.h), stopped by PID on every
 * exit path; each server is stopped by PID (harness). Waits are bounded
 * loops on observable state (answers, /metrics), never on time. */
#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEED(x) CHECK((x), "%s", #x)

enum {
    N_USERS = 6,
    N_CONVS = 12,
    BURST = 12,          /* sends per user per round, spread over the conversations */
    ROUNDS = 6,          /* at least; then on until commits were in flight together */
    ROUNDS_MAX = 30,
    N_SENDS = N_USERS * BURST * ROUNDS_MAX,
    RETRY_ROUNDS_MAX = 300,
    MAX_FRAMES = 4096,   /* frames read for one burst's answers: a bound */
};

static h_server S;

static double metric(const char *name) {
    double v = -1;
    if (h_metric(&S, name, &v) != 0) return -1;
    return v;
}

static void start_cassandra(void) {
    CHECK(cassandra_node_start("test-writer-pipeline") == 0, "no Cassandra");
}

static void start_server(const char *keyspace) {
    const char *flags[] = {"--store", "cassandra", "--cassandra", cassandra_node_hosts(), "--keyspace", keyspace,
                           "--send-rate", "1000000", "--writers", "2",
                           /* the raw connections wait silently while Cassandra is frozen */
                           "--idle-timeout", "600000", NULL};
    CHECK(h_server_start(&S, flags) == 0, "serve --store cassandra did not start");
}

/* a send's identity: the text body is "u<user>-n<n>", its client_msg_id the same */
typedef struct sent_rec {
    uint64_t conv, rid, seq;
    char id[24];
    int answered;
} sent_rec;

static sent_rec *recs;   /* [N_SENDS] */

static int send_frame(h_raw *w, uint64_t rid, uint64_t conv, const char *id) {
    Parley__V1__SendMessage m = PARLEY__V1__SEND_MESSAGE__INIT;
    m.conversation_id = conv;
    m.type = PARLEY__V1__MESSAGE_TYPE__TEXT;
    m.body.data = (uint8_t *)id;
    m.body.len = strlen(id);
    m.client_msg_id.data = (uint8_t *)id;
    m.client_msg_id.len = strlen(id);
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = rid;
    f.body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f.send_message = &m;
    return h_raw_send_frame(w, &f);
}

/* reads frames on w until every rec in [from, from+n) is answered; each
 * answer must be a first one, OK, SENT, not a duplicate. 0 or -1. */
static int read_answers(h_raw *w, int from, int n) {
    int left = n;
    for (int frames = 0; left > 0 && frames < MAX_FRAMES; frames++) {
        int close_code = 0;
        Parley__V1__Frame *f = h_raw_next_frame(w, &close_code);
        if (!f) {
            fprintf(stderr, "connection closed or silent (%d) with %d answers missing\n", close_code, left);
            return -1;
        }
        if (f->body_case != PARLEY__V1__FRAME__BODY_RESPONSE || f->request_id == 0) {
            parley__v1__frame__free_unpacked(f, NULL);
            continue;
        }
        sent_rec *r = NULL;
        for (int i = from; i < from + n && !r; i++)
            if (recs[i].rid == f->request_id) r = &recs[i];
        int ok = r && !r->answered && f->response->status == PARLEY__V1__STATUS__OK &&
                 f->response->result_case == PARLEY__V1__RESPONSE__RESULT_SENT && !f->response->sent->duplicate &&
                 f->response->sent->conversation_id == r->conv;
        if (!ok) {
            fprintf(stderr, "answer to request %llu: %s (status %d, message %s)\n",
                    (unsigned long long)f->request_id, r ? (r->answered ? "a second answer" : "not a new SENT")
                                                          : "not a request of this burst",
                    f->response->status, f->response->error ? f->response->error : "");
            parley__v1__frame__free_unpacked(f, NULL);
            return -1;
        }
        r->answered = 1;
        r->seq = f->response->sent->seq;
        left--;
        parley__v1__frame__free_unpacked(f, NULL);
    }
    return left == 0 ? 0 : -1;
}

/* conv's history is its membership messages plus exactly the acknowledged
 * sends of recs[0..n) in conv, seqs 1..last each once */
static int history_exact(h_dev *d, uint64_t conv, int n) {
    size_t len = 0;
    h_event *ev = h_history_all(d, conv, &len);
    if (!ev) return -1;
    int bad = 0;
    size_t texts = 0;
    for (size_t i = 0; i < len && !bad; i++) {
        if (ev[i].seq != i + 1) {
            fprintf(stderr, "conv %llu: history position %zu has seq %llu\n", (unsigned long long)conv, i,
                    (unsigned long long)ev[i].seq);
            bad = 1;
            break;
        }
        if (ev[i].type == PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP) continue;
        texts++;
        int found = 0;
        for (int k = 0; k < n; k++)
            if (recs[k].conv == conv && recs[k].seq == ev[i].seq) {
                found++;
                if (!h_event_body_is(&ev[i], recs[k].id)) {
                    fprintf(stderr, "conv %llu seq %llu: body is not %s\n", (unsigned long long)conv,
                            (unsigned long long)ev[i].seq, recs[k].id);
                    bad = 1;
                }
            }
        if (found != 1) {
            fprintf(stderr, "conv %llu seq %llu: acknowledged %d times\n", (unsigned long long)conv,
                    (unsigned long long)ev[i].seq, found);
            bad = 1;
        }
    }
    size_t acked = 0;
    for (int k = 0; k < n; k++) acked += recs[k].conv == conv;
    if (!bad && texts != acked) {
        fprintf(stderr, "conv %llu: %zu messages in history, %zu acknowledged\n", (unsigned long long)conv, texts,
                acked);
        bad = 1;
    }
    h_events_free(ev, len);
    return bad ? -1 : (int)len;
}

static void many_senders_many_conversations(void) {
    start_server("wpipe_many");
    h_dev *u[N_USERS] = {0};
    uint64_t ids[N_USERS];
    for (int i = 0; i < N_USERS; i++) {
        u[i] = h_user_new(&S, NULL);
        NEED(u[i]);
        ids[i] = u[i]->id.user_id;
    }
    uint64_t conv[N_CONVS];
    for (int c = 0; c < N_CONVS; c++) {
        char name[16];
        snprintf(name, sizeof name, "g%d", c);
        NEED(pc_create_group(u[c % N_USERS]->c, name, ids, N_USERS, &conv[c]) == 0);
    }
    for (int i = 0; i < N_USERS; i++) NEED(h_accept_all(u[i]) == 0);
    recs = h_calloc(N_SENDS, sizeof *recs);
    static h_raw w[N_USERS];
    for (int i = 0; i < N_USERS; i++) {
        NEED(h_raw_open(&S, &w[i]) == 0);
        NEED(h_raw_sign_in(&w[i], &u[i]->id) == 0);
    }
    int n = 0;
    for (int round = 0; round < ROUNDS_MAX &&
                        (round < ROUNDS || metric("parley_writer_commits_in_flight_peak") < 2);
         round++) {
        int first[N_USERS];
        /* every user's burst on the wire before any answer is read */
        for (int i = 0; i < N_USERS; i++) {
            first[i] = n;
            for (int b = 0; b < BURST; b++, n++) {
                sent_rec *r = &recs[n];
                r->conv = conv[(2 * i + b) % N_CONVS];
                r->rid = 100000 + (uint64_t)n;
                snprintf(r->id, sizeof r->id, "u%d-n%d", i, n);
                CHECK(send_frame(&w[i], r->rid, r->conv, r->id) == 0, "send %d", n);
            }
        }
        for (int i = 0; i < N_USERS; i++)
            CHECK(read_answers(&w[i], first[i], BURST) == 0, "round %d: user %d's answers", round, i);
    }
    for (int i = 0; i < N_USERS; i++) h_raw_close(&w[i]);
    CHECK(metric("parley_writer_commits_in_flight_peak") >= 2, "commits were never in flight together (peak %.0f)",
          metric("parley_writer_commits_in_flight_peak"));
    CHECK(metric("parley_writer_commits_in_flight") == 0, "commits still in flight after every answer");
    fprintf(stderr, "many_senders_many_conversations: %d sends, peak %.0f commits in flight, %.0f sends held back\n",
            n, metric("parley_writer_commits_in_flight_peak"), metric("parley_writer_commit_waits_total"));

    int len[N_CONVS];
    for (int c = 0; c < N_CONVS; c++) CHECK((len[c] = history_exact(u[0], conv[c], n)) > 0, "history of group %d", c);
    /* a fresh device of each user: sync gives every conversation exactly */
    for (int i = 0; i < N_USERS; i++) {
        h_dev *fresh = h_dev_for_identity(&S, &u[i]->id, "fresh", 0);
        NEED(fresh);
        CHECK(h_dev_sync(fresh, 120000) == 0, "sync of user %d", i);
        for (int c = 0; c < N_CONVS; c++) {
            char why[256] = "";
            CHECK(h_dev_check_order(fresh, conv[c], why, sizeof why) == 0, "user %d group %d: %s", i, c, why);
            CHECK(h_dev_count(fresh, conv[c]) == (size_t)len[c], "user %d group %d: synced %zu of %d", i, c,
                  h_dev_count(fresh, conv[c]), len[c]);
        }
        h_dev_free(fresh);
    }
    for (int i = 0; i < N_USERS; i++) h_dev_free(u[i]);
    h_free(recs);
    recs = NULL;
    h_server_destroy(&S);
}

/* Reads the answers to rid_first and rid_retry, in arrival order. */
static int read_pair(h_raw *w, uint64_t rid_first, uint64_t rid_retry, Parley__V1__Frame *got[2]) {
    int n = 0;
    for (int frames = 0; n < 2 && frames < MAX_FRAMES; frames++) {
        int close_code = 0;
        Parley__V1__Frame *f = h_raw_next_frame(w, &close_code);
        if (!f) return -1;
        if (f->body_case == PARLEY__V1__FRAME__BODY_RESPONSE &&
            (f->request_id == rid_first || f->request_id == rid_retry)) {
            got[n++] = f;
            continue;
        }
        parley__v1__frame__free_unpacked(f, NULL);
    }
    return n == 2 ? 0 : -1;
}

static void retry_of_a_send_in_flight(void) {
    start_server("wpipe_retry");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    NEED(h_accept(b, conv) == 0);
    recs = h_calloc(RETRY_ROUNDS_MAX, sizeof *recs);
    h_raw w;
    NEED(h_raw_open(&S, &w) == 0);
    NEED(h_raw_sign_in(&w, &a->id) == 0);
    size_t before = 0;   /* the conversation's membership messages */
    h_event *ev = h_history_all(a, conv, &before);
    NEED(ev);
    h_events_free(ev, before);
    uint64_t last = before;
    int n = 0;
    /* a pair per round until a retry met its first attempt in flight (the
     * server decides what arrives in which batch), at most RETRY_ROUNDS_MAX */
    for (; n < RETRY_ROUNDS_MAX && (n < 2 || metric("parley_writer_retries_in_flight_total") <= 0); n++) {
        sent_rec *r = &recs[n];
        r->conv = conv;
        r->rid = 1000 + 2 * (uint64_t)n;
        snprintf(r->id, sizeof r->id, "retry-%d", n);
        CHECK(send_frame(&w, r->rid, conv, r->id) == 0, "send %d", n);
        CHECK(send_frame(&w, r->rid + 1, conv, r->id) == 0, "retry %d", n);
        Parley__V1__Frame *got[2] = {0};
        CHECK(read_pair(&w, r->rid, r->rid + 1, got) == 0, "round %d: answers missing", n);
        int ok = got[0]->request_id == r->rid;
        for (int k = 0; k < 2; k++)
            ok = ok && got[k]->response->status == PARLEY__V1__STATUS__OK &&
                 got[k]->response->result_case == PARLEY__V1__RESPONSE__RESULT_SENT;
        if (ok) {
            Parley__V1__Sent *s0 = got[0]->response->sent, *s1 = got[1]->response->sent;
            ok = !s0->duplicate && s1->duplicate && s0->seq == s1->seq && s0->seq == last + 1;
            if (!ok)
                fprintf(stderr, "round %d: first seq %llu dup %d, retry seq %llu dup %d, want seq %llu\n", n,
                        (unsigned long long)s0->seq, s0->duplicate, (unsigned long long)s1->seq, s1->duplicate,
                        (unsigned long long)(last + 1));
            last = s0->seq;
            r->seq = s0->seq;
        } else {
            fprintf(stderr, "round %d: answer to request %llu came first, or not OK SENT\n", n,
                    (unsigned long long)got[0]->request_id);
        }
        for (int k = 0; k < 2; k++) parley__v1__frame__free_unpacked(got[k], NULL);
        CHECK(ok, "round %d: the first send answered first, the retry with its seq as a duplicate", n);
    }
    CHECK(metric("parley_writer_retries_in_flight_total") > 0,
          "no retry met its first attempt in flight in %d rounds", n);
    fprintf(stderr, "retry_of_a_send_in_flight: %d rounds, %.0f retries met their first attempt in flight\n", n,
            metric("parley_writer_retries_in_flight_total"));
    h_raw_close(&w);
    /* history: each id once, at the seq both attempts were answered with */
    CHECK(history_exact(a, conv, n) > 0, "history of the direct conversation");
    h_dev_free(a);
    h_dev_free(b);
    h_free(recs);
    recs = NULL;
    h_server_destroy(&S);
}

/* ------------------------------------------------------------- frozen */

enum { F_USERS = 4, F_CONVS = 8, F_BURST0 = 8, F_BURST1 = 48, F_ROUNDS = 2, F_SENDS = F_USERS * (F_BURST0 + F_BURST1),
       F_WAIT_MS = 240000, F_RETRIES = 6 };

typedef struct outcome {
    int answered, status, duplicate;
    uint64_t seq;
} outcome;

/* reads frames on every connection until each rec in [from, from+n) of
 * each user has an answer (any status), bounded by F_WAIT_MS; 0 or -1 */
static int read_outcomes(h_raw *w, const int *from, int n, outcome *out) {
    uint64_t until = h_now_ms() + F_WAIT_MS;
    for (int i = 0; i < F_USERS; i++) {
        int left = 0;
        for (int k = from[i]; k < from[i] + n; k++) left += !out[k].answered;
        while (left > 0) {
            if (h_now_ms() > until) return -1;
            int close_code = 0;
            Parley__V1__Frame *f = h_raw_next_frame(&w[i], &close_code);
            if (!f) {
                if (w[i].eof || close_code) return -1;
                continue;   /* quiet for a read's bound: a commit may wait for its timeout */
            }
            for (int k = from[i]; k < from[i] + n && f->body_case == PARLEY__V1__FRAME__BODY_RESPONSE; k++) {
                if (recs[k].rid != f->request_id) continue;
                if (out[k].answered) {
                    fprintf(stderr, "request %llu answered twice\n", (unsigned long long)f->request_id);
                    parley__v1__frame__free_unpacked(f, NULL);
                    return -1;
                }
                out[k].answered = 1;
                out[k].status = f->response->status;
                if (f->response->status == PARLEY__V1__STATUS__OK &&
                    f->response->result_case == PARLEY__V1__RESPONSE__RESULT_SENT) {
                    out[k].seq = f->response->sent->seq;
                    out[k].duplicate = f->response->sent->duplicate;
                }
                left--;
            }
            parley__v1__frame__free_unpacked(f, NULL);
        }
    }
    return 0;
}

static void frozen_then_resumed_no_gap(void) {
    start_server("wpipe_frozen");
    h_dev *u[F_USERS] = {0};
    uint64_t ids[F_USERS];
    for (int i = 0; i < F_USERS; i++) {
        u[i] = h_user_new(&S, NULL);
        NEED(u[i]);
        ids[i] = u[i]->id.user_id;
    }
    uint64_t conv[F_CONVS];
    for (int c = 0; c < F_CONVS; c++) {
        char name[16];
        snprintf(name, sizeof name, "f%d", c);
        NEED(pc_create_group(u[c % F_USERS]->c, name, ids, F_USERS, &conv[c]) == 0);
    }
    for (int i = 0; i < F_USERS; i++) NEED(h_accept_all(u[i]) == 0);
    recs = h_calloc(F_SENDS, sizeof *recs);
    outcome *out = h_calloc(F_SENDS, sizeof *out);
    static h_raw w[F_USERS];
    for (int i = 0; i < F_USERS; i++) {
        NEED(h_raw_open(&S, &w[i]) == 0);
        NEED(h_raw_sign_in(&w[i], &u[i]->id) == 0);
    }
    /* round 0 before, round 1 pipelined right before the freeze (some of it
     * in commits in flight when it comes, the rest waiting for reads) */
    int n = 0, from[F_ROUNDS][F_USERS];
    for (int round = 0; round < F_ROUNDS; round++) {
        for (int i = 0; i < F_USERS; i++) {
            from[round][i] = n;
            for (int b = 0; b < (round ? F_BURST1 : F_BURST0); b++, n++) {
                sent_rec *r = &recs[n];
                r->conv = conv[(3 * i + b) % F_CONVS];
                r->rid = 500000 + (uint64_t)n;
                snprintf(r->id, sizeof r->id, "f%d-u%d-n%d", round, i, n);
                CHECK(send_frame(&w[i], r->rid, r->conv, r->id) == 0, "send %d", n);
            }
        }
        if (round == 0) {
            CHECK(read_outcomes(w, from[0], F_BURST0, out) == 0, "answers before the freeze");
            for (int k = 0; k < n; k++)
                CHECK(out[k].status == PARLEY__V1__STATUS__OK && !out[k].duplicate, "send %d before the freeze", k);
        }
    }
    CHECK(cassandra_node_freeze(30000) == 0, "cassandra_node_freeze");
    /* frozen until the store has failed a commit (one in flight fails after
     * its attempts, 12 s each), at most 450 polls (not an expectation: if
     * no commit was in flight, reads timed out instead) */
    double failed_commits = 0, timeouts = 0;
    for (int t = 0; t < 450 && failed_commits <= 0; t++) {
        h_sleep_ms(200);
        h_metric(&S, "parley_store_commit_failures_total", &failed_commits);
        h_metric(&S, "parley_store_cql_timeouts_total", &timeouts);
    }
    CHECK(kill(cassandra_node_pid(), SIGCONT) == 0, "SIGCONT");
    CHECK(failed_commits > 0 || timeouts > 0, "the store never noticed the freeze");
    /* every send is answered once */
    CHECK(read_outcomes(w, from[1], F_BURST1, out) == 0, "answers of the burst around the freeze");
    h_metric(&S, "parley_store_commit_failures_total", &failed_commits);
    int healthy = 0;
    for (int t = 0; t < 1200 && !healthy; t++) {
        int status = 0;
        char body[256];
        healthy = h_http_get(S.port, "/healthz", &status, body, sizeof body) == 0 && status == 200;
        if (!healthy) h_sleep_ms(200);
    }
    CHECK(healthy, "/healthz not 200 after SIGCONT");
    /* every send again with its id (the acknowledged ones too): a retry of a
     * stored one gets its seq, the rest are stored now, once */
    for (int attempt = 0; attempt < F_RETRIES; attempt++) {
        int pending = 0;
        for (int k = 0; k < n; k++) {
            int is_ok = out[k].status == PARLEY__V1__STATUS__OK;
            if (attempt > 0 && is_ok) continue;
            if (attempt == 0 && is_ok) recs[k].seq = out[k].seq;   /* acknowledged: must keep it */
            int user = 0;
            for (int i = 0; i < F_USERS; i++)
                for (int round = 0; round < F_ROUNDS; round++)
                    if (k >= from[round][i] && k < from[round][i] + (round ? F_BURST1 : F_BURST0)) user = i;
            out[k].answered = 0;
            recs[k].rid += 1000000;
            CHECK(send_frame(&w[user], recs[k].rid, recs[k].conv, recs[k].id) == 0, "retry %d", k);
            pending++;
        }
        if (pending == 0) break;
        /* read every connection's answers (recs of all rounds) */
        for (int i = 0; i < F_USERS; i++) {
            uint64_t until = h_now_ms() + F_WAIT_MS;
            for (;;) {
                int left = 0;
                for (int round = 0; round < F_ROUNDS; round++)
                    for (int k = from[round][i]; k < from[round][i] + (round ? F_BURST1 : F_BURST0); k++)
                        left += !out[k].answered;
                if (left == 0) break;
                CHECK(h_now_ms() < until, "retries of user %d not answered", i);
                int close_code = 0;
                Parley__V1__Frame *f = h_raw_next_frame(&w[i], &close_code);
                CHECK(f || (!w[i].eof && !close_code), "user %d's connection closed", i);
                if (!f) continue;
                for (int k = 0; k < n && f->body_case == PARLEY__V1__FRAME__BODY_RESPONSE; k++) {
                    if (recs[k].rid != f->request_id || out[k].answered) continue;
                    out[k].answered = 1;
                    uint64_t prev_seq = recs[k].seq;
                    out[k].status = f->response->status;
                    if (f->response->status == PARLEY__V1__STATUS__OK &&
                        f->response->result_case == PARLEY__V1__RESPONSE__RESULT_SENT) {
                        out[k].seq = f->response->sent->seq;
                        CHECK(!prev_seq || prev_seq == out[k].seq, "%s: acknowledged seq %llu, retry got %llu",
                              recs[k].id, (unsigned long long)prev_seq, (unsigned long long)out[k].seq);
                        CHECK(!prev_seq || f->response->sent->duplicate, "%s: retry of a stored send not a duplicate",
                              recs[k].id);
                        recs[k].seq = out[k].seq;
                    }
                }
                parley__v1__frame__free_unpacked(f, NULL);
            }
        }
    }
    for (int k = 0; k < n; k++) CHECK(out[k].status == PARLEY__V1__STATUS__OK, "%s never stored", recs[k].id);
    fprintf(stderr, "frozen_then_resumed_no_gap: %.0f commits failed while frozen, peak %.0f in flight\n",
            failed_commits, metric("parley_writer_commits_in_flight_peak"));
    for (int i = 0; i < F_USERS; i++) h_raw_close(&w[i]);
    /* no gap, each id once, at the seq it was acknowledged with */
    for (int c = 0; c < F_CONVS; c++) CHECK(history_exact(u[0], conv[c], n) > 0, "history of group %d", c);
    for (int i = 0; i < F_USERS; i++) h_dev_free(u[i]);
    h_free(out);
    h_free(recs);
    recs = NULL;
    h_server_destroy(&S);
}

int main(void) {
    RUN(start_cassandra);
    RUN(many_senders_many_conversations);
    RUN(retry_of_a_send_in_flight);
    RUN(frozen_then_resumed_no_gap);
    cassandra_node_stop();
    CHECK_EXIT();
}
