/* fanout.c -- the fan-out threads. See fanout.h.
 *
 * Users fall into U user partitions (chat/partition.h); fan-out thread i
 * of n (--fanouts) owns those with u mod n == i and is the single owner of
 * their inboxes' user_seq (the next one to give is cached per user), so
 * appends need no lock. Every thread sees every message, in each
 * conversation's seq order (the queue has one FIFO per thread), and appends
 * for its own users only. Membership is cached per conversation as (user,
 * joined_seq, left_seq) and reloaded when a MEMBERSHIP message passes,
 * which is exactly when it changes. Progress is a checkpoint per
 * (conversation partition, user partition); thread 0 also fans out presence
 * and trims each log below the least of its checkpoints. */
#include "fanout/fanout.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat/outbox.h"
#include "chat/partition.h"
#include "chat/push.h"
#include "chat/reply.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/u64map.h"
#include "push/push_gateway.h"

enum {
    ITEMS_PER_BATCH = 256,
    MAX_APPENDS_PER_BATCH = 65536,
    HEAD_CACHE_MAX = 1 << 20,
    MEMBER_CACHE_MAX = 1 << 16,
    MAX_DEVICES_PER_USER = 64,
    LOG_TRIM_EVERY = 4096,          /* offsets between deletions of the finished log */
    PRESENCE_FLUSH_MS = 250,
    PRESENCE_COALESCE_MS = 2000,
};

typedef struct member {
    uint64_t user, joined, left;
} member;

typedef struct member_list {
    size_t n;
    member m[];
} member_list;

typedef struct append {
    uint64_t user, user_seq;
    const queue_item *item;   /* borrowed: the queue item outlives the batch */
} append;

typedef struct fanout_set {
    uint32_t n;                 /* fan-out threads */
    uint32_t partitions, user_partitions;
    fanout **threads;
    _Atomic uint64_t *done;     /* [checkpoint_id(p, u)]: committed; the log is trimmed below their least */
} fanout_set;

struct fanout {
    server *srv;
    fanout_set *set;
    uint32_t index;         /* owns the user partitions u with u mod set->n == index */
    char name[16];
    pthread_t thread;
    store_batch *batch;
    u64map heads;           /* user -> last user_seq given */
    u64map members;         /* conversation -> member_list * */
    append *appends;
    size_t n_appends;
    uint32_t partitions, user_partitions;   /* P and U (chat/partition.h) */
    uint64_t *checkpoint;   /* [checkpoint_id(p, u)], owned u: the last offset of log p whose
                               entries are in those users' inboxes (committed or in the batch) */
    bool *touched;          /* per conversation partition: has items in the open batch */
    uint64_t *trimmed_through;   /* per conversation partition (thread 0 trims) */
    uint64_t *trim_now;          /* per conversation partition: trimmed through this in the open batch */
    uint64_t presence_flushed_ms;
    outbox_delivery *deliveries; /* route(): gathered, handed to the port DELIVERY_RUN at a time */
};

/* ------------------------------------------------------------ membership */

struct member_load {
    member_list *list;
    size_t cap;
};

static int member_load_cb(void *ud, uint64_t user, const Parley__Store__Member *m) {
    struct member_load *ml = ud;
    if (ml->list->n == ml->cap) {
        ml->cap *= 2;
        member_list *grown = realloc(ml->list, sizeof *grown + ml->cap * sizeof(member));
        if (!grown) abort();
        ml->list = grown;
    }
    ml->list->m[ml->list->n++] = (member){user, m->joined_seq, m->left_seq};
    return 0;
}

static void forget_members(fanout *f) {
    for (size_t i = 0; i < f->members.cap; i++)
        if (f->members.slots[i].key) free((void *)(uintptr_t)f->members.slots[i].value);
    u64map_free(&f->members);
}

static const member_list *members_of(fanout *f, uint64_t conv, bool reload) {
    uint64_t *slot = u64map_get(&f->members, conv);
    if (slot && !reload) return (const member_list *)(uintptr_t)*slot;
    if (slot) {
        free((void *)(uintptr_t)*slot);
        u64map_remove(&f->members, conv, NULL);
    }
    if (f->members.count >= MEMBER_CACHE_MAX) forget_members(f);
    struct member_load ml = {malloc(sizeof(member_list) + 8 * sizeof(member)), 8};
    if (!ml.list) abort();
    ml.list->n = 0;
    if (store_scan_members(f->srv->store, conv, member_load_cb, &ml) < 0)
        log_error("fanout: cannot read members of conversation %llu", (unsigned long long)conv);
    u64map_put(&f->members, conv, (uint64_t)(uintptr_t)ml.list);
    return ml.list;
}

/* who a message at seq reaches: members at that seq, and a member removed by
 * it (so they learn of it) */
static bool receives(const member *m, uint64_t seq) {
    return m->joined > 0 && m->joined <= seq && (m->left == 0 || m->left >= seq);
}

/* ---------------------------------------------------------------- inboxes */

static uint64_t next_user_seq(fanout *f, uint64_t user) {
    uint64_t *head = u64map_get(&f->heads, user);
    if (!head) {
        uint64_t h = 0;
        if (store_inbox_head(f->srv->store, user, &h) < 0) abort(); /* cannot number safely */
        if (f->heads.count >= HEAD_CACHE_MAX) u64map_free(&f->heads);
        u64map_put(&f->heads, user, h);
        head = u64map_get(&f->heads, user);
    }
    return ++*head;
}

static bool owns_user_partition(const fanout *f, uint32_t u) { return u % f->set->n == f->index; }

/* The item's entries in the inboxes of this thread's users; an inbox whose
 * user partition's checkpoint already covers the item has it (a replay
 * after a crash between two threads' commits). */
static void fan_item(fanout *f, const queue_item *it, uint32_t p) {
    const member_list *ml = members_of(f, it->conversation_id, it->membership);
    for (size_t i = 0; i < ml->n; i++) {
        const member *m = &ml->m[i];
        if (!receives(m, it->seq)) continue;
        uint32_t u = user_partition(m->user, f->user_partitions);
        if (!owns_user_partition(f, u)) continue;
        if (it->offset <= f->checkpoint[checkpoint_id(p, u, f->user_partitions)]) continue;
        uint64_t user_seq = next_user_seq(f, m->user);
        if (f->n_appends == MAX_APPENDS_PER_BATCH) abort(); /* bounded by the caller */
        f->appends[f->n_appends++] = (append){m->user, user_seq, it};
    }
    if (f->index == 0) METRIC_INC(fanout_messages_total);   /* every thread sees every message */
}

/* Deliveries go to the write path's port (chat/outbox.h) in runs: the
 * port hands each connection's owner its share of a run at once, one
 * hand-over per owner per run rather than one per delivery. */
enum { DELIVERY_RUN = 1024 };

static void route(fanout *f) {
    registry_entry entries[MAX_DEVICES_PER_USER];
    size_t len = 0;
    for (size_t i = 0; i < f->n_appends; i++) {
        append *a = &f->appends[i];
        size_t n = registry_lookup(f->srv->registry, a->user, entries, MAX_DEVICES_PER_USER);
        if (n > MAX_DEVICES_PER_USER) n = MAX_DEVICES_PER_USER;
        /* the user's devices with no live session get a push (push_gateway.h
         * finds them); not for the sender's own message or a membership change */
        if (f->srv->push && !a->item->membership && a->user != a->item->sender_user_id)
            push_gateway_hint(f->srv->push, a->user, a->item->conversation_id);
        for (size_t j = 0; j < n; j++) {
            f->deliveries[len++] = (outbox_delivery){entries[j].conn_id, a->user, a->user_seq, a->item->message};
            if (len == DELIVERY_RUN) {
                outbox_deliver(f->srv->outbox, f->deliveries, len);
                len = 0;
            }
        }
    }
    outbox_deliver(f->srv->outbox, f->deliveries, len);
}

static int append_order(const void *x, const void *y) {
    const append *a = x, *b = y;
    if (a->user != b->user) return a->user < b->user ? -1 : 1;
    return a->user_seq < b->user_seq ? -1 : a->user_seq > b->user_seq;
}

/* Puts the commit's records in key order: each user's inbox head ('H'),
 * the finished log ('L'), the entries ('X', by user and user_seq), the
 * checkpoint ('f'). The memtable inserts a batch in the order given, and in
 * key order each insert starts where the last one ended instead of
 * searching from the top (this was most of fan-out's time). Sorting by
 * (user, user_seq) also keeps every user's deliveries in order for route(). */
/* Log p's entries every user partition has committed: thread 0 deletes
 * them, now and then. 0: nothing due. */
static uint64_t trim_due(const fanout *f, uint32_t p) {
    if (f->index != 0) return 0;
    uint64_t least = UINT64_MAX;
    for (uint32_t u = 0; u < f->user_partitions; u++) {
        uint64_t done = atomic_load(&f->set->done[checkpoint_id(p, u, f->user_partitions)]);
        if (done < least) least = done;
    }
    return least - f->trimmed_through[p] >= LOG_TRIM_EVERY ? least : 0;
}

static void put_sorted(fanout *f) {
    qsort(f->appends, f->n_appends, sizeof *f->appends, append_order);
    for (size_t i = 0; i < f->n_appends; i++)
        if (i + 1 == f->n_appends || f->appends[i + 1].user != f->appends[i].user)
            store_put_inbox_head(f->batch, f->appends[i].user, f->appends[i].user_seq);
    for (uint32_t p = 0; p < f->partitions; p++)
        if (f->trim_now[p]) store_delete_log_through(f->batch, p, f->trim_now[p]);
    for (size_t i = 0; i < f->n_appends; i++) {
        const append *a = &f->appends[i];
        const queue_item *it = a->item;
        store_put_inbox(f->batch, a->user, a->user_seq, it->conversation_id, it->seq, it->sender_user_id, it->ts);
    }
    /* each partition's log is fanned out in offset order (its one writer
     * publishes in commit order), so its checkpoints are its last item's */
    for (uint32_t p = 0; p < f->partitions; p++)
        for (uint32_t u = 0; f->touched[p] && u < f->user_partitions; u++)
            if (owns_user_partition(f, u)) {
                uint32_t id = checkpoint_id(p, u, f->user_partitions);
                store_put_checkpoint(f->batch, id, f->checkpoint[id]);
            }
}

/* Commit failures: counted, and retried with a growing pause instead of
 * ten times a second forever (a full disk or a failing store does not heal
 * faster for being asked). */
static atomic_ulong commit_failures_total;
static atomic_long commit_stalled;   /* 1 while a commit keeps failing */

enum { RETRY_FIRST_MS = 100, RETRY_MAX_MS = 5000 };

uint32_t fanout_retry_delay_ms(uint32_t attempt) {
    uint32_t d = RETRY_FIRST_MS;
    for (uint32_t i = 1; i < attempt && d < RETRY_MAX_MS; i++) d *= 2;
    return d < RETRY_MAX_MS ? d : RETRY_MAX_MS;
}

size_t fanout_metrics_render(char *out, size_t cap) {
    int n = snprintf(out, cap,
        "# HELP parley_fanout_commit_failures_total Fan-out commits that failed (each retried after a growing pause).\n"
        "# TYPE parley_fanout_commit_failures_total counter\nparley_fanout_commit_failures_total %lu\n"
        "# HELP parley_fanout_stalled 1 while fan-out waits for a failing commit to succeed.\n"
        "# TYPE parley_fanout_stalled gauge\nparley_fanout_stalled %ld\n",
        atomic_load(&commit_failures_total), atomic_load(&commit_stalled));
    if (n < 0) return 0;
    return (size_t)n < cap ? (size_t)n : 0;
}

/* Nothing after this batch may be numbered on top of entries that are not
 * there, so it is retried until it lands; the log says so once per doubling. */
static void commit_until_done(fanout *f) {
    for (uint32_t attempt = 1; store_commit(f->srv->store, f->batch, false) != 0; attempt++) {
        atomic_fetch_add(&commit_failures_total, 1);
        atomic_store(&commit_stalled, 1);
        uint32_t delay = fanout_retry_delay_ms(attempt);
        if (delay < RETRY_MAX_MS || attempt % 12 == 0)
            log_error("fanout: commit failed (%s, attempt %u); retrying in %u ms",
                      store_health_name(store_get_health(f->srv->store)), attempt, delay);
        usleep(delay * 1000u);
    }
    atomic_store(&commit_stalled, 0);
}

/* Fans out items[0..n): appends, one commit with the checkpoint, then
 * routing. A failed commit is retried: nothing after it may be numbered on
 * top of entries that are not there. */
static void fan_batch(fanout *f, queue_item **items, size_t n, bool replaying) {
    size_t done = 0;
    while (done < n) {
        f->n_appends = 0;
        memset(f->touched, 0, f->partitions * sizeof *f->touched);
        /* keep the appends of one commit bounded, whatever the group sizes */
        while (done < n && f->n_appends + f->srv->cfg.max_group_members <= MAX_APPENDS_PER_BATCH) {
            const queue_item *it = items[done++];
            uint32_t p = it->partition < f->partitions ? it->partition : 0;
            f->touched[p] = true;
            fan_item(f, it, p);
            for (uint32_t u = 0; u < f->user_partitions; u++) {
                uint32_t id = checkpoint_id(p, u, f->user_partitions);
                if (owns_user_partition(f, u) && it->offset > f->checkpoint[id]) f->checkpoint[id] = it->offset;
            }
        }
        for (uint32_t p = 0; p < f->partitions; p++) f->trim_now[p] = f->touched[p] ? trim_due(f, p) : 0;
        put_sorted(f);
        /* Not fsynced: the writer's next fsync covers this too (one write-ahead
         * log), and if a power cut takes it, the checkpoint goes with the
         * entries and the replay numbers them again the same way. */
        commit_until_done(f);
        for (uint32_t p = 0; p < f->partitions; p++)
            if (f->trim_now[p]) f->trimmed_through[p] = f->trim_now[p];
        for (uint32_t p = 0; p < f->partitions; p++)
            for (uint32_t u = 0; f->touched[p] && u < f->user_partitions; u++)
                if (owns_user_partition(f, u)) {
                    uint32_t id = checkpoint_id(p, u, f->user_partitions);
                    atomic_store(&f->set->done[id], f->checkpoint[id]);
                }
        METRIC_ADD(inbox_appends_total, f->n_appends);
        /* a replay runs before anyone can be connected */
        if (!replaying) route(f);
    }
}

/* ----------------------------------------------------------------- replay */

struct replay {
    fanout *f;
    uint32_t partition;
    queue_item *items[ITEMS_PER_BATCH];
    size_t n;
    int failed;
};

static void replay_flush(struct replay *r) {
    fan_batch(r->f, r->items, r->n, true);
    for (size_t i = 0; i < r->n; i++) queue_item_free(r->items[i]);
    r->n = 0;
}

static int replay_entry(void *ud, uint64_t offset, uint64_t conv, uint64_t seq) {
    struct replay *r = ud;
    store_bytes raw;
    if (store_get_message(r->f->srv->store, conv, seq, &raw) != 1) {
        log_error("fanout: log names missing message %llu/%llu", (unsigned long long)conv,
                  (unsigned long long)seq);
        r->failed = 1;
        return 1;
    }
    Parley__V1__Message *m = parley__v1__message__unpack(NULL, raw.len, raw.data);
    queue_item *it = calloc(1, sizeof *it);
    if (!m || !it) abort();
    it->partition = r->partition;
    it->offset = offset;
    it->conversation_id = conv;
    it->seq = seq;
    it->sender_user_id = m->sender_user_id;
    it->ts = m->server_ts;
    it->membership = m->type == PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP;
    it->message = blob_new(raw.data, raw.len);
    parley__v1__message__free_unpacked(m, NULL);
    store_bytes_free(&raw);
    r->items[r->n++] = it;
    METRIC_INC(fanout_replayed_total);
    if (r->n == ITEMS_PER_BATCH) replay_flush(r);
    return 0;
}

static void fanout_free(fanout *f) {
    if (!f) return;
    free(f->checkpoint);
    free(f->touched);
    free(f->trimmed_through);
    free(f->trim_now);
    store_batch_free(f->batch);
    u64map_free(&f->heads);
    forget_members(f);
    free(f->appends);
    free(f->deliveries);
    free(f);
}

static fanout *fanout_new(server *srv, fanout_set *set, uint32_t index) {
    fanout *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->srv = srv;
    f->set = set;
    f->index = index;
    snprintf(f->name, sizeof f->name, "parley-fanout%u", index % 100);   /* 15 bytes at most: a thread name */
    f->partitions = set->partitions;
    f->user_partitions = set->user_partitions;
    f->batch = store_batch_new();
    f->appends = malloc(MAX_APPENDS_PER_BATCH * sizeof *f->appends);
    f->deliveries = malloc(DELIVERY_RUN * sizeof *f->deliveries);
    size_t ids = (size_t)f->partitions * f->user_partitions;
    f->checkpoint = calloc(ids, sizeof *f->checkpoint);
    f->touched = calloc(f->partitions, sizeof *f->touched);
    f->trimmed_through = calloc(f->partitions, sizeof *f->trimmed_through);
    f->trim_now = calloc(f->partitions, sizeof *f->trim_now);
    if (!f->batch || !f->appends || !f->deliveries || !f->checkpoint || !f->touched ||
        !f->trimmed_through || !f->trim_now)
        abort();
    for (size_t id = 0; id < ids; id++) f->checkpoint[id] = atomic_load(&set->done[id]);
    for (uint32_t p = 0; p < f->partitions; p++) {
        /* the log below every user partition's checkpoint may be gone */
        uint64_t least = UINT64_MAX;
        for (uint32_t u = 0; u < f->user_partitions; u++) {
            uint64_t c = f->checkpoint[checkpoint_id(p, u, f->user_partitions)];
            if (c < least) least = c;
        }
        f->trimmed_through[p] = least;
    }
    return f;
}

static void set_free(fanout_set *set) {
    if (!set) return;
    for (uint32_t i = 0; set->threads && i < set->n; i++) fanout_free(set->threads[i]);
    free(set->threads);
    free(set->done);
    free(set);
}

/* n threads (not started), each with the store's checkpoints */
static fanout_set *set_new(server *srv, uint32_t n) {
    fanout_set *set = calloc(1, sizeof *set);
    if (!set) return NULL;
    if (partitions_load(srv->store, &set->partitions, &set->user_partitions)) {
        free(set);
        return NULL;
    }
    set->n = n < 1 ? 1 : n > set->user_partitions ? set->user_partitions : n;
    size_t ids = (size_t)set->partitions * set->user_partitions;
    set->done = calloc(ids, sizeof *set->done);
    set->threads = calloc(set->n, sizeof *set->threads);
    if (!set->done || !set->threads) abort();
    for (size_t id = 0; id < ids; id++) {
        uint64_t c = 0;
        if (store_get_checkpoint(srv->store, (uint32_t)id, &c) < 0) {
            set_free(set);
            return NULL;
        }
        atomic_store(&set->done[id], c);
    }
    for (uint32_t i = 0; i < set->n; i++)
        if (!(set->threads[i] = fanout_new(srv, set, i))) {
            set_free(set);
            return NULL;
        }
    return set;
}

uint32_t fanout_threads(server *srv) {
    uint32_t p = 0, u = 0;
    if (partitions_load(srv->store, &p, &u)) return 1;
    uint32_t n = srv->cfg.fanouts ? srv->cfg.fanouts : 1;
    return n > u ? u : n;
}

/* Every partition's log past the least checkpoint of its user partitions,
 * partition 0 first: a store from before partitions has its whole log
 * there, and those entries are older than any in the other partitions'
 * logs (which only a start that finished this replay can have written).
 * One thread that owns every user partition does it all; fan_item skips
 * the inboxes whose checkpoint already covers an entry. */
int fanout_replay(server *srv) {
    fanout_set *set = set_new(srv, 1);
    if (!set) return -1;
    fanout *f = set->threads[0];
    struct replay *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->f = f;
    int rc = 0;
    for (uint32_t p = 0; p < f->partitions && rc == 0; p++) {
        uint64_t from = f->trimmed_through[p];   /* the least checkpoint of p */
        r->partition = p;
        rc = store_scan_log(srv->store, p, from, replay_entry, r);
        if (r->n) replay_flush(r);
        rc = rc || r->failed ? -1 : 0;
        uint64_t after = f->checkpoint[checkpoint_id(p, 0, f->user_partitions)];
        if (after > from)
            log_info("fanout: replayed partition %u log offsets %llu..%llu", p, (unsigned long long)from + 1,
                     (unsigned long long)after);
    }
    free(r);
    set_free(set);
    return rc;
}

/* ------------------------------------------------------------- the thread */

/* ---------------------------------------------------------------- presence */

static void emit_presence(void *ud, uint64_t conn_id, uint64_t user, int online, uint64_t last_seen_ms) {
    fanout *f = ud;
    Parley__V1__Frame frame;
    Parley__V1__Presence p;
    push_frame_presence(&frame, &p, user, online, last_seen_ms);
    reply_push_now(f->srv->outbox, conn_id, &frame);
}

/* Presence changes are fanned out here too: to the connections subscribed
 * to the user, at most one change per user per PRESENCE_COALESCE_MS. */
static void fan_presence(fanout *f) {
    uint64_t now = clock_wall_ms();
    if (now - f->presence_flushed_ms < PRESENCE_FLUSH_MS) return;
    f->presence_flushed_ms = now;
    registry_presence_flush(f->srv->registry, now, PRESENCE_COALESCE_MS, emit_presence, f);
}

static void *fanout_main(void *arg) {
    fanout *f = arg;
    pthread_setname_np(pthread_self(), f->name);   /* seen in top -H, perf */
    queue_item *items[ITEMS_PER_BATCH];
    for (;;) {
        if (f->index == 0) fan_presence(f);
        size_t n = queue_consume(f->srv->queue, f->index, items, ITEMS_PER_BATCH, PRESENCE_FLUSH_MS);
        atomic_store(&g_metrics.fanout_queue_depth, (long)queue_depth(f->srv->queue));
        if (n == 0) {
            if (queue_closed(f->srv->queue)) break;
            continue;
        }
        fan_batch(f, items, n, false);
        for (size_t i = 0; i < n; i++) queue_item_free(items[i]);
    }
    return NULL;
}

fanout *fanout_start(server *srv) {
    fanout_set *set = set_new(srv, fanout_threads(srv));
    if (!set) return NULL;
    uint32_t started = 0;
    while (started < set->n && pthread_create(&set->threads[started]->thread, NULL, fanout_main,
                                              set->threads[started]) == 0)
        started++;
    if (started < set->n) {
        log_error("fanout: cannot start its threads");
        _exit(1);   /* running threads hold the set: no clean way back */
    }
    log_info("fan-out: %u threads over %u user partitions", set->n, set->user_partitions);
    return set->threads[0];   /* the handle of the set */
}

void fanout_stop(fanout *f) {
    if (!f) return;
    fanout_set *set = f->set;
    queue_close(f->srv->queue);
    for (uint32_t i = 0; i < set->n; i++) pthread_join(set->threads[i]->thread, NULL);
    set_free(set);
}
