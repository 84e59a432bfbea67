/* chat_owner.c -- see chat_owner.h.
 *
 * Hand-over (DESIGN note). A chat node given partitions fans out, before
 * it feeds any record of them to its writers, what the store's fan-out log
 * of those conversation partitions holds past their checkpoints
 * (fanout_replay with the partitions, through this node's running fan-out
 * threads): the messages the previous owner stored and acknowledged but
 * did not fan out before it died or stalled. Nobody else would: that node's
 * own replay runs only when it starts again.
 * - Exactly once: a checkpoint (conversation partition, user partition) is
 *   committed in the same store batch as the inbox entries it covers, so
 *   the store's checkpoint says exactly which log entries those users'
 *   inboxes hold. (On Cassandra the entries' conditional batches land
 *   before the logged batch with the checkpoint: a node that died between
 *   them left entries past its checkpoint, so a replayed entry is looked
 *   for in the inbox before it is appended: fanout/inbox_fence.h, deep.) The replay raises this node's in-memory checkpoints to
 *   the store's before it publishes anything, and fan-out appends an entry
 *   to an inbox only past its checkpoint. An entry this node's own queue
 *   still holds (its partitions revoked and given back: the revoke's wait
 *   gave up, or a writer answered a send and had not yet handed it to
 *   fan-out when the wait looked) is published twice; the reader drops
 *   the second copy (fanout.c read_items: a partition's offsets only grow),
 *   test_kafka_handover_queue. The fan-out threads also drop their cached inbox heads (between
 *   commits) and members: the other node appended and may have changed
 *   membership.
 * - Order: the entries are published to the fan-out queue in log order
 *   (the writer numbers the log in commit order, so in seq order per
 *   conversation), to the one reader of their partition, before any record
 *   of the partition reaches a writer (the replay runs on this thread,
 *   between polls, ahead of run_batch); what the writers store after it is
 *   published behind it.
 * - Failure: a replay that cannot read the store rewinds the consumer and
 *   is tried again after a back-off, like a batch the store failed; the
 *   partitions' records wait in Kafka meanwhile.
 * - The previous owner alive: an orderly revoke waits (HANDOFF_WAIT_MS at
 *   most) until this node's fan-out has routed everything published to it
 *   before it returns, and the group gives the partitions to the next
 *   owner only after that, so the two do not fan out the same entries.
 * - The previous owner stalled (a zombie: its assignment is lost, not
 *   revoked) and resumes fanning out its queue while this node replays the
 *   same entries: its entries are stale by then (older than
 *   INBOX_FENCE_STALE_MS), so its fan-out looks for each in the inbox
 *   before appending it (fanout/inbox_fence.h; test_drill_zombie).
 * - Log offsets: the writers reload on a hand-over (writer_forget_cached)
 *   and take a new range of offsets for each partition (chat/log_range.h),
 *   claimed in the store, above every range used before: a zombie still
 *   writing its fan-out log in its old range never overwrites this node's
 *   entries, and this node's sort above its. */
#include "cluster/chat_owner.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/writer.h"
#include "cluster/delivered_record.h"
#include "cluster/node_forward.h"
#include "cluster/send_log.h"
#include "cluster/send_record.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/u64map.h"
#include "fanout/fanout.h"
#include "gateway/ops_http.h"
#include "queue/kafka/kafka_log.h"

enum {
    POLL_MS = 200,
    BACKOFF_MIN_MS = 200,
    BACKOFF_MAX_MS = 2000,
    MAX_HANDED = 4096,          /* 'sends' partitions (chat/partition.h PARTITIONS_MAX) */
    HANDOFF_WAIT_MS = 10000,    /* an orderly revoke waits this long at most for this node's fan-out */
    TXN_TIMEOUT_MS = 30000,     /* a commit or rewind call's bound */
    TXN_LIFETIME_MS = 10000,    /* the coordinator aborts an owner's transaction older than this
                                 * (one that died inside a commit holds its partitions' offsets
                                 * unstable until then) */
    SLOT_BITS = 16,             /* an owned id: batch number above, slot below */
};
#define OWNER_GROUP "parley-chat"

typedef struct owned {
    bool answered, retry;
    bool delivered;            /* a delivered record (delivered_record.h): answered to nobody */
    char origin[SEND_RECORD_NAME_MAX + 1];
    uint64_t conn_id;          /* on the origin */
} owned;

struct chat_owner {
    server *srv;
    char brokers[512];
    char self[SEND_RECORD_NAME_MAX + 1];
    kafka_consumer *in;
    kafka_producer *txn;

    pthread_mutex_t mu;        /* batch, slots, unanswered */
    pthread_cond_t cv;
    uint64_t batch;            /* the batch whose answers are awaited (0: none) */
    owned slots[OWNER_BATCH];
    size_t unanswered;
    bool store_failed;         /* this batch had an answer saying the store failed */

    /* records read since the last commit of the input offsets whose answer
     * was final (key: record_key): a batch read again after a retry or a
     * failed commit does not feed them to the writers a second time (sends
     * would be found by their dedupe records and a CreateGroup by its group
     * origin record, chat/group_origin.h; this spares the store reads).
     * Owner's thread only. */
    u64map finished;

    /* given and not yet replayed (on_rebalance and owner_main: the owner's
     * thread only, inside and between polls) */
    bool handed[MAX_HANDED];
    size_t n_handed;

    delivered_raise raises[DELIVERED_RECORD_RAISES_MAX];   /* run_delivered's, the owner's thread only */

    atomic_bool stop, store_waiting;
    pthread_t thread;
    bool running;

    /* the test hook of chat_owner.h: hold the offsets of a batch with a
     * CreateGroup (owner's thread only, after start) */
    bool hold_create_group, batch_has_create_group;
};

enum { FINISHED_MAX = 1 << 16 };   /* more are forgotten (a store that fails a long time) */

static uint64_t record_key(const kafka_record *r) {
    return ((uint64_t)(uint32_t)r->partition << 48 | ((uint64_t)r->offset & 0xffffffffffffull)) + 1;
}

static Parley__V1__Status answer_status(const uint8_t *frame, size_t len) {
    Parley__V1__Frame *f = parley__v1__frame__unpack(NULL, len, frame);
    Parley__V1__Status st = PARLEY__V1__STATUS__OK;
    if (f && f->body_case == PARLEY__V1__FRAME__BODY_RESPONSE && f->response) st = f->response->status;
    if (f) parley__v1__frame__free_unpacked(f, NULL);
    return st;
}

void chat_owner_answered(chat_owner *co, uint64_t conn_id, const uint8_t *frame, size_t len, uint64_t user,
                         uint32_t device) {
    uint64_t batch = (conn_id & ~CHAT_OWNER_ID_BITS) >> SLOT_BITS;
    size_t slot = conn_id & ((1u << SLOT_BITS) - 1);
    Parley__V1__Status st = answer_status(frame, len);
    bool retry = st == PARLEY__V1__STATUS__UNAVAILABLE || st == PARLEY__V1__STATUS__INTERNAL ||
                 st == PARLEY__V1__STATUS__INSUFFICIENT_STORAGE;
    char origin[SEND_RECORD_NAME_MAX + 1] = "";
    uint64_t origin_conn = 0;
    pthread_mutex_lock(&co->mu);
    if (co->batch && batch == co->batch && slot < OWNER_BATCH && !co->slots[slot].answered) {
        owned *o = &co->slots[slot];
        o->answered = true;
        o->retry = retry;
        if (st != PARLEY__V1__STATUS__UNAVAILABLE && retry) co->store_failed = true;
        if (!retry && o->delivered) METRIC_INC(kafka_delivered_records_applied_total);
        if (!retry) {
            strcpy(origin, o->origin);   /* "" for a delivered record */
            origin_conn = o->conn_id;
        }
        if (--co->unanswered == 0) pthread_cond_signal(&co->cv);
    }
    pthread_mutex_unlock(&co->mu);
    /* a stale batch's answer (it was read again) is dropped: the new one answers */
    if (origin[0]) node_forward_answer_origin(co->srv->forward, origin, origin_conn, frame, len, user, device);
}

static void sleep_ms(int ms);

/* the hook's test: r's request is a CreateGroup */
static bool is_create_group(const send_record *r) {
    Parley__V1__Frame *f = parley__v1__frame__unpack(NULL, r->frame_len, r->frame);
    bool yes = f && f->body_case == PARLEY__V1__FRAME__BODY_CREATE_GROUP;
    if (f) parley__v1__frame__free_unpacked(f, NULL);
    return yes;
}

static void on_rebalance(void *ud, kafka_rebalance what, const kafka_partition *parts, size_t n) {
    chat_owner *co = ud;
    for (size_t i = 0; i < n; i++) {
        if (parts[i].partition < 0 || parts[i].partition >= MAX_HANDED) continue;
        bool *h = &co->handed[parts[i].partition];
        /* given: replayed before its records are fed; taken: not ours to replay */
        if (*h != (what == KAFKA_ASSIGNED)) co->n_handed += what == KAFKA_ASSIGNED ? 1 : (size_t)-1;
        *h = what == KAFKA_ASSIGNED;
    }
    if (what == KAFKA_ASSIGNED) {
        /* another node may have written these partitions since this one did */
        writer_forget_cached(co->srv->writer);
        METRIC_ADD(kafka_owner_partitions, (long)n);
    } else {
        /* no batch is in the writers now: records are polled between batches */
        METRIC_ADD(kafka_owner_partitions, -(long)n);
        /* An orderly revoke: the next owner is given the partitions only
         * once this returns, and replays their log past the checkpoints;
         * what this node stored and has not fanned out yet would be fanned
         * out by both. So its fan-out finishes first (bounded). A lost
         * assignment (this node stalled) has moved on already. */
        uint64_t until = clock_mono_ms() + HANDOFF_WAIT_MS;
        while (what == KAFKA_REVOKED && queue_pending_deliveries(co->srv->queue) > 0 && clock_mono_ms() < until)
            sleep_ms(10);
    }
    log_info("kafka: %s %zu partition(s) of %s", what == KAFKA_ASSIGNED ? "given" : "lost", n, SEND_LOG_TOPIC);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* Record i of batch, a delivered record: its raises go to the writer that
 * owns their conversations, which answers once they are stored (the
 * offset is committed only after). false when the writer did not take it
 * (the batch is read again); a malformed one is skipped. */
static bool run_delivered(chat_owner *co, uint64_t batch, size_t i, const kafka_record *rec) {
    uint64_t user = 0;
    size_t n = 0;
    if (delivered_record_parse(rec->value, rec->len, &user, co->raises, &n) || rec->partition < 0) {
        log_warn("kafka: malformed delivered record at %d/%lld skipped", (int)rec->partition, (long long)rec->offset);
        return true;
    }
    pthread_mutex_lock(&co->mu);
    owned *o = &co->slots[i];
    o->delivered = true;
    co->unanswered++;
    pthread_mutex_unlock(&co->mu);
    uint64_t id = CHAT_OWNER_ID_BITS | batch << SLOT_BITS | i;
    int rc = writer_submit_delivered(co->srv->writer, (uint32_t)rec->partition, id, user, co->raises, n);
    if (rc) {
        pthread_mutex_lock(&co->mu);
        o->answered = true;
        o->retry = rc == -1;   /* -2: never to be applied, nothing to wait for */
        co->unanswered--;
        pthread_mutex_unlock(&co->mu);
        if (rc == -1) return false;
        log_warn("kafka: delivered record at %d/%lld names a conversation of another partition; skipped",
                 (int)rec->partition, (long long)rec->offset);
        return true;
    }
    METRIC_INC(kafka_owner_records_total);
    return true;
}

/* Feeds recs into the writers and waits for every answer (bounded). true
 * when every record was answered with a final status. */
static bool run_batch(chat_owner *co, kafka_record *recs, size_t n) {
    pthread_mutex_lock(&co->mu);
    uint64_t batch = ++co->batch;
    co->unanswered = 0;
    co->store_failed = false;
    memset(co->slots, 0, sizeof co->slots);
    pthread_mutex_unlock(&co->mu);
    bool all_taken = true;
    for (size_t i = 0; i < n; i++) {
        if (u64map_get(&co->finished, record_key(&recs[i]))) continue;   /* answered when read before */
        if (delivered_record_is(recs[i].value, recs[i].len)) {
            if (!run_delivered(co, batch, i, &recs[i])) all_taken = false;
            continue;
        }
        send_record r;
        if (send_record_parse(recs[i].value, recs[i].len, &r)) {
            log_warn("kafka: malformed %s record at %d/%lld skipped", SEND_LOG_TOPIC, (int)recs[i].partition,
                     (long long)recs[i].offset);
            continue;
        }
        if (co->hold_create_group && is_create_group(&r)) co->batch_has_create_group = true;
        pthread_mutex_lock(&co->mu);
        owned *o = &co->slots[i];
        strcpy(o->origin, r.origin);
        o->conn_id = r.conn_id;
        co->unanswered++;
        pthread_mutex_unlock(&co->mu);
        uint64_t id = CHAT_OWNER_ID_BITS | batch << SLOT_BITS | i;
        if (node_forward_submit_owned(co->srv->forward, id, r.request_id, r.user_id, r.device_id, r.frame,
                                      r.frame_len, (uint32_t)recs[i].partition, (uint64_t)recs[i].offset)) {
            pthread_mutex_lock(&co->mu);
            o->answered = o->retry = true;
            co->unanswered--;
            pthread_mutex_unlock(&co->mu);
            all_taken = false;
            continue;
        }
        METRIC_INC(kafka_owner_records_total);
    }
    uint64_t until = clock_mono_ms() + OWNER_ANSWER_WAIT_MS;
    pthread_mutex_lock(&co->mu);
    while (co->unanswered && clock_mono_ms() < until && !atomic_load(&co->stop)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&co->cv, &co->mu, &ts);
    }
    bool done = all_taken && co->unanswered == 0;
    for (size_t i = 0; done && i < n; i++) done = !co->slots[i].retry;
    if (co->finished.count > FINISHED_MAX) u64map_free(&co->finished);
    for (size_t i = 0; i < n; i++)
        if (co->slots[i].answered && !co->slots[i].retry && u64map_put(&co->finished, record_key(&recs[i]), 1))
            abort();
    atomic_store(&co->store_waiting, co->store_failed || co->unanswered != 0);
    co->batch = 0;   /* answers from now on are stale */
    pthread_mutex_unlock(&co->mu);
    return done;
}

/* The partitions given since the last replay, fanned out past their
 * checkpoints (the note at the top). 0, or -1: try again later. */
static int replay_handed(chat_owner *co) {
    uint32_t parts[MAX_HANDED];
    size_t n = 0;
    for (uint32_t p = 0; p < MAX_HANDED && n < co->n_handed; p++)
        if (co->handed[p]) parts[n++] = p;
    uint64_t replayed = 0;
    if (fanout_replay(co->srv, parts, n, &replayed)) {
        log_error("kafka: the fan-out replay of %zu given partition(s) failed; retried", n);
        return -1;
    }
    METRIC_ADD(kafka_handover_replayed_total, replayed);
    if (replayed)
        log_info("kafka: %llu fan-out log entries of the partitions given read again (those an inbox has are "
                 "skipped)", (unsigned long long)replayed);
    memset(co->handed, 0, sizeof co->handed);
    co->n_handed = 0;
    return 0;
}

static void *owner_main(void *arg) {
    chat_owner *co = arg;
    kafka_record recs[OWNER_BATCH];
    int backoff = 0;
    while (!atomic_load(&co->stop)) {
        int n = kafka_consumer_poll(co->in, recs, OWNER_BATCH, POLL_MS);
        if (n < 0) {
            log_error("kafka: the %s consumer failed", SEND_LOG_TOPIC);
            sleep_ms(BACKOFF_MAX_MS);
            continue;
        }
        if (co->n_handed && co->srv->fanout && replay_handed(co)) {
            /* no record of them may reach a writer first: read again later */
            if (n > 0) kafka_records_release(recs, (size_t)n);
            kafka_consumer_rewind(co->in, TXN_TIMEOUT_MS);
            METRIC_INC(kafka_owner_retries_total);
            backoff = backoff ? (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2) : BACKOFF_MIN_MS;
            sleep_ms(backoff);
            continue;
        }
        if (n == 0) continue;
        bool done = run_batch(co, recs, (size_t)n);
        kafka_records_release(recs, (size_t)n);
        /* the transaction holds only the input offsets: it is opened once
         * the batch is stored, so no store outage keeps it open */
        kafka_result kr = KAFKA_ABORTED;
        if (done && co->batch_has_create_group) {
            log_warn("kafka: test hook PARLEY_TEST_HOLD_OFFSET_COMMIT: a batch with a CreateGroup is stored and "
                     "answered; its input offsets are not committed, and no more records are taken");
            while (!atomic_load(&co->stop)) sleep_ms(POLL_MS);
            break;
        }
        if (done) {
            kr = kafka_txn_begin(co->txn, co->in);
            if (kr == KAFKA_OK) kr = kafka_txn_commit(co->txn, co->in, TXN_TIMEOUT_MS);
        } else if (kafka_consumer_rewind(co->in, TXN_TIMEOUT_MS)) {
            kr = KAFKA_ERROR;
        }
        if (kr == KAFKA_OK) {
            u64map_free(&co->finished);   /* their offsets are committed: never read again */
            METRIC_INC(kafka_owner_commits_total);
            atomic_store(&g_metrics.kafka_owner_store_waiting, 0);
            atomic_store(&co->store_waiting, false);
            backoff = 0;
            continue;
        }
        METRIC_INC(kafka_owner_retries_total);
        atomic_store(&g_metrics.kafka_owner_store_waiting, atomic_load(&co->store_waiting) ? 1 : 0);
        if (kr == KAFKA_FENCED) {
            /* another incarnation of this node took the transactional id: it
             * owns what this one had */
            log_error("kafka: this chat node's producer was fenced; it takes no more %s records", SEND_LOG_TOPIC);
            break;
        }
        if (kr == KAFKA_ERROR) kafka_consumer_rewind(co->in, TXN_TIMEOUT_MS);
        /* the records wait in Kafka; read again after a pause */
        backoff = backoff ? (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2) : BACKOFF_MIN_MS;
        sleep_ms(backoff);
    }
    return NULL;
}

static bool waiting_for_store(void *ctx) { return atomic_load(&((chat_owner *)ctx)->store_waiting); }

chat_owner *chat_owner_start(server *srv, const char *brokers, char *err, size_t errlen) {
    chat_owner *co = calloc(1, sizeof *co);
    if (!co) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    co->srv = srv;
    snprintf(co->brokers, sizeof co->brokers, "%s", brokers);
    snprintf(co->self, sizeof co->self, "%s", srv->cfg.cluster.node);
    pthread_mutex_init(&co->mu, NULL);
    pthread_cond_init(&co->cv, NULL);
    const char *hold = getenv("PARLEY_TEST_HOLD_OFFSET_COMMIT");
    co->hold_create_group = hold && strcmp(hold, "create_group") == 0;
    if (co->hold_create_group)
        log_warn("kafka: test hook PARLEY_TEST_HOLD_OFFSET_COMMIT=create_group: the owner stops before committing "
                 "the offsets of a batch with a CreateGroup");
    char why[KAFKA_LOG_ERRLEN] = "";
    /* one transactional id per node name: a restarted node fences its
     * previous incarnation; the group metadata in each commit fences an
     * owner the group has moved on from (KIP-447) */
    char txn_id[128];
    snprintf(txn_id, sizeof txn_id, "parley-chat/%s", co->self);
    kafka_producer_config pc = {.brokers = brokers, .transactional_id = txn_id,
                                .transaction_timeout_ms = TXN_LIFETIME_MS};
    co->txn = kafka_producer_new(&pc, TXN_TIMEOUT_MS, why);
    if (!co->txn) {
        snprintf(err, errlen, "kafka transactional producer: %s", why);
        chat_owner_free(co);
        return NULL;
    }
    const char *topics[] = {SEND_LOG_TOPIC};
    kafka_consumer_config cc = {.brokers = brokers, .group = OWNER_GROUP, .topics = topics, .ntopics = 1,
                                .session_timeout_ms = OWNER_SESSION_MS, .on_rebalance = on_rebalance,
                                .owner = co};
    co->in = kafka_consumer_new(&cc, why);
    if (!co->in) {
        snprintf(err, errlen, "kafka consumer: %s", why);
        chat_owner_free(co);
        return NULL;
    }
    if (pthread_create(&co->thread, NULL, owner_main, co) != 0) {
        snprintf(err, errlen, "cannot start the chat owner thread");
        chat_owner_free(co);
        return NULL;
    }
    co->running = true;
    ops_health_wait_on("the store", waiting_for_store, co);
    return co;
}

void chat_owner_stop(chat_owner *co) {
    if (!co) return;
    ops_health_wait_off(co);
    if (co->running) {
        atomic_store(&co->stop, true);
        pthread_mutex_lock(&co->mu);
        pthread_cond_signal(&co->cv);
        pthread_mutex_unlock(&co->mu);
        pthread_join(co->thread, NULL);
        co->running = false;
    }
    /* leaves the group: the partitions go to the other chat nodes now */
    kafka_consumer_free(co->in);
    co->in = NULL;
    kafka_producer_free(co->txn, 5000);
    co->txn = NULL;
}

void chat_owner_free(chat_owner *co) {
    if (!co) return;
    chat_owner_stop(co);
    pthread_mutex_destroy(&co->mu);
    pthread_cond_destroy(&co->cv);
    u64map_free(&co->finished);
    free(co);
}
