/* fanout.c -- the fan-out threads. See fanout.h.
 *
 * Each message is read once. Fan-out thread i of n (--fanouts) has two
 * roles, each with a single owner:
 *
 * - reader of the conversation partitions p with p mod n == i: the queue
 *   gives it those partitions' items only (queue_local.c), in each
 *   conversation's seq order. It resolves who receives each message, once
 *   (membership is cached per conversation as (user, joined_seq, left_seq),
 *   one entry per span of a member removed and added again, and reloaded
 *   when a MEMBERSHIP message passes: the store may be ahead of the reader
 *   by then, which the spans make harmless), and hands each user partition's owner a run: the (user,
 *   message) pairs for that owner's users, in read order, and a mark per
 *   conversation partition read (the last offset read of it).
 * - owner (appender) of the user partitions u with u mod n == i: it alone
 *   numbers their inboxes (user_seq; the next one to give is cached per
 *   user), so appends need no lock. It appends the runs it is handed, in
 *   the order each reader handed them, commits them with its checkpoints,
 *   then routes them to the devices online.
 *
 * Why this split and not routing at publish time: who receives a message
 * is fan-out's knowledge (the writer does not hold member lists), and a
 * message must be resolved by one thread that sees its conversation in
 * order. Before, every thread read every message and resolved its members,
 * and kept only its own users: n times the reading and the membership
 * work, and one copy of every item per thread.
 *
 * What keeps the guarantees: one reader per conversation partition and
 * FIFO hand-offs, so a conversation's messages reach every inbox in seq
 * order (a reader drops an item at or below the highest offset it read of
 * its partition: published twice by a hand-over replay); one owner per
 * user, so every inbox is strictly increasing.
 * Progress is a checkpoint per (conversation partition, user partition):
 * the last offset of that log whose entries are in those users' inboxes.
 * Offsets are range << 32 | n (chat/log_range.h: each load of a partition
 * by a writer takes a new range, so a stalled old owner and the new one
 * never give the same offset): they increase but jump by up to 2^32 where
 * a range begins, so the offset arithmetic below only compares and
 * subtracts (a checkpoint's lag and the trim's distance pass their bounds
 * at once across a jump: one more checkpoint write and one more trim per
 * range, no more).
 * It is written in the same commit as any entry it covers; when an owner
 * only advances it (none of its users were in the messages read) the
 * record may lag by up to CHECKPOINT_LAG offsets, so steady traffic does
 * not write every user partition's checkpoint of every partition it
 * touches into every commit. A replay after a crash re-reads from the
 * records, and a re-read message adds nothing for a user partition whose
 * record lags: none of its users received it. Thread 0 also fans out
 * presence and trims each log below the least of its checkpoints.
 *
 * Bounds: a reader has at most RUN_SETS_OUT sets of n runs handed out and
 * not yet appended (then it appends what it was handed and waits, never
 * blocking on another thread's mailbox, which is sized for that, so two
 * threads never wait for each other); a run and a commit hold at most
 * MAX_APPENDS_PER_BATCH entries (one message of a larger group alone). */
#include "fanout/fanout.h"
#include "cluster/chat_owner.h"
#include "cluster/node_forward.h"
#include "fanout/inbox_fence.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat/outbox.h"
#include "chat/partition.h"
#include "chat/push.h"
#include "chat/recent_inbox.h"
#include "chat/reply.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/mpsc.h"
#include "core/test_hold.h"
#include "core/u64map.h"
#include "push/push_gateway.h"

enum {
    ITEMS_PER_BATCH = 256,
    MAX_APPENDS_PER_BATCH = 65536,
    RUNS_PER_TURN = 64,             /* runs appended in one commit, at most */
    RUN_SETS_OUT = 8,               /* a reader's hand-offs not yet appended, in sets of n runs */
    HEAD_CACHE_MAX = 1 << 20,
    MEMBER_CACHE_MAX = 1 << 16,
    MAX_DEVICES_PER_USER = 64,
    LOG_TRIM_EVERY = 4096,          /* offsets between deletions of the finished log */
    CHECKPOINT_LAG = 1024,          /* offsets a checkpoint record may lag while it covers no entry */
    PRESENCE_FLUSH_MS = 250,
    PRESENCE_COALESCE_MS = 2000,
    STARVED_WAIT_MS = 10,           /* a reader out of room re-checks this often (a missed wake-up) */
};

typedef struct member {
    uint64_t user, joined, left;
} member;

typedef struct member_list {
    size_t n;
    member m[];
} member_list;

/* one inbox entry to make, handed from a reader to the user's owner */
typedef struct grant {
    uint64_t user, offset, conversation_id, seq, sender_user_id, ts;
    uint32_t partition;
    bool membership;   /* a MEMBERSHIP message (no push for it) */
    bool replayed;     /* from fanout_replay: may be in the inbox already (inbox_fence.h deep) */
    blob *message;     /* one reference */
} grant;

/* a conversation partition read through offset */
typedef struct mark {
    uint32_t partition;
    uint64_t offset;
} mark;

/* A reader's hand-off to one owner: the grants for its users and the marks
 * of everything read with them, which its checkpoints may advance to once
 * the grants are committed. */
typedef struct run {
    struct fanout *from;   /* the reader; its runs_out counts this run */
    grant *g;
    size_t n, cap;
    mark *marks;
    size_t n_marks;
} run;

typedef struct append {
    uint64_t user, user_seq;
    const grant *g;   /* borrowed: the run is freed after the commit and routing */
    bool present;     /* already in the inbox at user_seq (inbox_fence.h): routed, not written */
    bool deep;        /* replayed or stale: looked for among the inbox's last entries (inbox_fence.h) */
} append;

typedef struct fanout_set {
    uint32_t n;                 /* fan-out threads */
    uint32_t partitions, user_partitions;
    fanout **threads;
    _Atomic uint64_t *done;     /* [checkpoint_id(p, u)]: committed; the log is trimmed below their least */
    atomic_uint readers_done;   /* readers whose closed queue is empty: none will hand off again */
    atomic_uint handovers;      /* fanout_replay while running: cached heads and members are stale */
} fanout_set;

struct fanout {
    server *srv;
    fanout_set *set;
    uint32_t index;         /* reads the partitions p, owns the user partitions u, with p, u mod set->n == index */
    char name[16];
    pthread_t thread;
    bool replaying;         /* fanout_replay: route nothing (no one is connected) */
    /* the reader */
    u64map members;         /* conversation -> member_list * */
    run **building;         /* [set->n]: the runs being filled for each owner */
    size_t building_grants; /* in all of them */
    mark *marks;            /* partitions read since the last hand-off */
    size_t n_marks;
    int32_t *mark_of;       /* [partition]: its index in marks, or -1 */
    uint64_t *read_through; /* [partition]: the highest offset read (offsets count from 1) */
    atomic_long runs_out;   /* handed off and not yet appended */
    atomic_bool starved;    /* waiting for runs_out to drop: the owner that frees one wakes it */
    bool reading_done;
    unsigned members_handover;   /* set->handovers its member cache is from */
    /* the owner */
    mpsc mailbox;           /* runs handed to this owner */
    store_batch *batch;
    u64map heads;           /* user -> last user_seq given */
    unsigned heads_handover;    /* set->handovers its heads are from */
    bool fence_check;       /* a user touched cold had entries past its hint (inbox_fence.h) */
    append *appends;
    size_t n_appends, cap_appends;
    run *held[RUNS_PER_TURN];   /* runs of the open commit */
    size_t n_held;
    uint32_t partitions, user_partitions;   /* P and U (chat/partition.h) */
    uint64_t *checkpoint;   /* [checkpoint_id(p, u)], owned u: the last offset of log p whose
                               entries are in those users' inboxes (committed or in the batch) */
    uint64_t *recorded;     /* [checkpoint_id(p, u)]: what the store holds */
    bool *dirty;            /* [checkpoint_id(p, u)]: written in the open commit */
    uint32_t *dirty_ids;
    size_t n_dirty;
    bool *touched;          /* per conversation partition: in the open commit */
    uint32_t *touched_list;
    size_t n_touched;
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
    /* a member re-added has one entry per span: a seq is in one at most */
    for (size_t i = 0; i <= m->n_earlier; i++) {
        if (ml->list->n == ml->cap) {
            ml->cap *= 2;
            member_list *grown = realloc(ml->list, sizeof *grown + ml->cap * sizeof(member));
            if (!grown) abort();
            ml->list = grown;
        }
        ml->list->m[ml->list->n++] = i < m->n_earlier
            ? (member){user, m->earlier[i]->joined_seq, m->earlier[i]->left_seq}
            : (member){user, m->joined_seq, m->left_seq};
    }
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

/* Commit failures: counted, and retried with a growing pause instead of
 * ten times a second forever (a full disk or a failing store does not heal
 * faster for being asked). */
static atomic_ulong commit_failures_total;
static atomic_long commit_stalled;   /* 1 while a commit keeps failing */
static atomic_ulong inbox_conflicts_total;   /* commits another writer's user_seqs refused */
/* drill 4 (a stalled chat node resumed): what the stale-entry check costs and finds */
static atomic_ulong stale_entries_total;     /* entries older than INBOX_FENCE_STALE_MS at their commit */
static atomic_ulong stale_checks_total;      /* commits that read the inboxes for them */
static atomic_ulong entries_present_total;   /* entries the inbox fence found there already: not appended */
static atomic_ulong stale_present_total;     /* of those, stale ones (not replayed): what a zombie would have doubled */
static atomic_ulong read_twice_total;        /* queue items at or below their partition's highest offset read: dropped */

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
        "# TYPE parley_fanout_stalled gauge\nparley_fanout_stalled %ld\n"
        "# HELP parley_fanout_inbox_conflicts_total Fan-out commits whose user_seqs another writer had taken (renumbered).\n"
        "# TYPE parley_fanout_inbox_conflicts_total counter\nparley_fanout_inbox_conflicts_total %lu\n"
        "# HELP parley_fanout_stale_entries_total Inbox entries not from a replay committed 5 s or more after their message was numbered (--kafka: each looked for among its inbox's last 4096 entries first).\n"
        "# TYPE parley_fanout_stale_entries_total counter\nparley_fanout_stale_entries_total %lu\n"
        "# HELP parley_fanout_stale_checks_total Fan-out commits that read their users' inboxes because of stale entries.\n"
        "# TYPE parley_fanout_stale_checks_total counter\nparley_fanout_stale_checks_total %lu\n"
        "# HELP parley_fanout_entries_present_total Inbox entries found in the inbox already by the fence (not appended again).\n"
        "# TYPE parley_fanout_entries_present_total counter\nparley_fanout_entries_present_total %lu\n"
        "# HELP parley_fanout_stale_present_total Stale inbox entries (not from a replay) found in the inbox already: not appended twice.\n"
        "# TYPE parley_fanout_stale_present_total counter\nparley_fanout_stale_present_total %lu\n"
        "# HELP parley_fanout_read_twice_total Fan-out log entries published to fan-out again while it still held them (a hand-over replay): read once.\n"
        "# TYPE parley_fanout_read_twice_total counter\nparley_fanout_read_twice_total %lu\n",
        atomic_load(&commit_failures_total), atomic_load(&commit_stalled), atomic_load(&inbox_conflicts_total),
        atomic_load(&stale_entries_total), atomic_load(&stale_checks_total), atomic_load(&entries_present_total),
        atomic_load(&stale_present_total), atomic_load(&read_twice_total));
    if (n < 0 || (size_t)n >= cap) return 0;
    size_t len = (size_t)n + recent_inbox_metrics_render(out + n, cap - (size_t)n);
    return len + queue_metrics_render(out + len, cap - len);
}

static void put_sorted(fanout *f);
static int append_order(const void *x, const void *y);

/* The open commit's entries checked against the inboxes and renumbered
 * after their heads (inbox_fence.h); retried while the store fails. */
static void renumber(fanout *f) {
    qsort(f->appends, f->n_appends, sizeof *f->appends, append_order);
    inbox_claim *c = malloc((f->n_appends ? f->n_appends : 1) * sizeof *c);
    if (!c) abort();
    for (size_t i = 0; i < f->n_appends; i++)
        c[i] = (inbox_claim){f->appends[i].user, f->appends[i].user_seq, f->appends[i].g->conversation_id,
                             f->appends[i].g->seq, f->appends[i].deep, false};
    for (uint32_t attempt = 1; inbox_fence_renumber(f->srv->store, c, f->n_appends, &f->heads) != 0; attempt++) {
        if (store_stopped(f->srv->store)) break;   /* the commit fails too: left to the replay */
        usleep(fanout_retry_delay_ms(attempt) * 1000u);
    }
    size_t present = 0, stale_present = 0;
    for (size_t i = 0; i < f->n_appends; i++) {
        f->appends[i].user_seq = c[i].user_seq;
        f->appends[i].present = c[i].present;
        present += c[i].present;
        stale_present += c[i].present && f->appends[i].deep && !f->appends[i].g->replayed;
    }
    atomic_fetch_add(&entries_present_total, present);
    atomic_fetch_add(&stale_present_total, stale_present);
    free(c);
}

/* Nothing after this batch may be numbered on top of entries that are not
 * there, so it is retried until it lands; the log says so once per doubling.
 * A conflict (another writer took some of its user_seqs) renumbers the
 * entries and builds the batch again. */
static void commit_until_done(fanout *f) {
    int rc;
    for (uint32_t attempt = 1; (rc = store_commit(f->srv->store, f->batch, false)) != 0; attempt++) {
        if (rc == STORE_CONFLICT) {
            atomic_fetch_add(&inbox_conflicts_total, 1);
            renumber(f);
            store_batch_free(f->batch);
            if (!(f->batch = store_batch_new())) abort();
            put_sorted(f);
            /* two live writers keep taking turns: paced after a few rounds */
            if (attempt > 4) usleep(fanout_retry_delay_ms(attempt - 4) * 1000u);
            continue;
        }
        atomic_fetch_add(&commit_failures_total, 1);
        if (store_stopped(f->srv->store)) {   /* the server stops: the replay at the next start redoes it */
            log_warn("fanout: commit failed while the store stops; left to the replay at the next start");
            break;
        }
        atomic_store(&commit_stalled, 1);
        uint32_t delay = fanout_retry_delay_ms(attempt);
        if (delay < RETRY_MAX_MS || attempt % 12 == 0)
            log_error("fanout: commit failed (%s, attempt %u); retrying in %u ms",
                      store_health_name(store_get_health(f->srv->store)), attempt, delay);
        usleep(delay * 1000u);
    }
    atomic_store(&commit_stalled, 0);
}


static uint32_t owner_of(const fanout_set *set, uint32_t u) { return u % set->n; }
static bool owns_user_partition(const fanout *f, uint32_t u) { return owner_of(f->set, u) == f->index; }

/* ------------------------------------------------------------- the owner */

/* The user's next user_seq: its inbox head is read once, then counted
 * here. A failed read is tried again after a growing pause (nothing may be
 * numbered on a guess); 0 when the store stops meanwhile: the commit that
 * entry was for fails then too, and the replay at the next start numbers
 * it. */
static uint64_t next_user_seq(fanout *f, uint64_t user) {
    uint64_t *head = u64map_get(&f->heads, user);
    if (!head) {
        uint64_t h = 0, hint = 0;
        for (uint32_t attempt = 1; store_inbox_heads(f->srv->store, user, &hint, &h) < 0; attempt++) {
            if (store_stopped(f->srv->store)) return 0;
            uint32_t delay = fanout_retry_delay_ms(attempt);
            if (delay < RETRY_MAX_MS || attempt % 12 == 0)
                log_error("fanout: inbox head read failed (attempt %u); retrying in %u ms", attempt, delay);
            usleep(delay * 1000u);
        }
        if (h > hint) f->fence_check = true;   /* entries whose logged batch never landed */
        if (f->heads.count >= HEAD_CACHE_MAX) u64map_free(&f->heads);
        u64map_put(&f->heads, user, h);
        head = u64map_get(&f->heads, user);
    }
    return ++*head;
}

static void mark_dirty(fanout *f, uint32_t id) {
    if (f->dirty[id]) return;
    f->dirty[id] = true;
    f->dirty_ids[f->n_dirty++] = id;
}

static void touch(fanout *f, uint32_t p) {
    if (f->touched[p]) return;
    f->touched[p] = true;
    f->touched_list[f->n_touched++] = p;
}

/* Raises *done to at least v (a hand-over replay may raise it from another
 * thread while its owner commits). */
static void raise_done(_Atomic uint64_t *done, uint64_t v) {
    uint64_t cur = atomic_load(done);
    while (cur < v && !atomic_compare_exchange_weak(done, &cur, v)) {
    }
}

/* A hand-over replay (fanout_replay while running) raised this checkpoint
 * to what another node committed: from now on this owner's is that one. */
static void adopt_done(fanout *f, uint32_t id) {
    uint64_t done = atomic_load(&f->set->done[id]);
    if (done <= f->checkpoint[id]) return;
    f->checkpoint[id] = done;
    if (done > f->recorded[id]) f->recorded[id] = done;
}

/* The run's entries in its users' inboxes; an inbox whose user partition's
 * checkpoint already covers an entry has it (a replay after a crash between
 * two owners' commits). Then its marks advance the checkpoints. */
static void append_run(fanout *f, const run *r) {
    for (size_t i = 0; i < r->n; i++) {
        const grant *g = &r->g[i];
        uint32_t u = user_partition(g->user, f->user_partitions);
        if (!owns_user_partition(f, u)) abort();   /* a reader routed it here: a bug, and no safe way on */
        uint32_t id = checkpoint_id(g->partition, u, f->user_partitions);
        adopt_done(f, id);
        if (g->offset <= f->checkpoint[id]) continue;
        if (f->n_appends == f->cap_appends) abort();   /* bounded by the caller */
        uint64_t user_seq = next_user_seq(f, g->user);
        if (user_seq == 0) continue;   /* the store stopped: left to the replay */
        if (g->replayed) f->fence_check = true;
        f->appends[f->n_appends++] = (append){g->user, user_seq, g, false, g->replayed};
        mark_dirty(f, id);
    }
    for (size_t k = 0; k < r->n_marks; k++) {
        uint32_t p = r->marks[k].partition;
        touch(f, p);
        for (uint32_t u = f->index; u < f->user_partitions; u += f->set->n) {
            uint32_t id = checkpoint_id(p, u, f->user_partitions);
            adopt_done(f, id);
            if (r->marks[k].offset > f->checkpoint[id]) f->checkpoint[id] = r->marks[k].offset;
            if (f->checkpoint[id] - f->recorded[id] >= CHECKPOINT_LAG) mark_dirty(f, id);
        }
    }
}

/* Deliveries go to the write path's port (chat/outbox.h) in runs: the
 * port hands each connection's owner its share of a run at once, one
 * hand-over per owner per run rather than one per delivery. */
enum { DELIVERY_RUN = 1024 };

/* One push hint per (user, conversation) per commit, not per message: a
 * notification says only "something in this conversation". The appends are
 * sorted by user, so the pending hints are the current user's, a few
 * conversations; past HINTED_CONVS a hint goes out at once. */
enum { HINTED_CONVS = 8 };
typedef struct hinted {
    uint64_t user;
    struct { uint64_t conv; uint32_t messages; } c[HINTED_CONVS];
    size_t n;
} hinted;

static void hints_send(fanout *f, hinted *h) {
    for (size_t i = 0; i < h->n; i++) push_gateway_hint(f->srv->push, h->user, h->c[i].conv, h->c[i].messages);
    h->n = 0;
}

static void hint_once(fanout *f, hinted *h, uint64_t user, uint64_t conv) {
    if (h->user != user) {
        hints_send(f, h);
        h->user = user;
    }
    for (size_t i = 0; i < h->n; i++)
        if (h->c[i].conv == conv) {
            h->c[i].messages++;
            return;
        }
    if (h->n == HINTED_CONVS) {
        push_gateway_hint(f->srv->push, user, conv, 1);
        return;
    }
    h->c[h->n].conv = conv;
    h->c[h->n].messages = 1;
    h->n++;
}

static void route(fanout *f) {
    registry_entry entries[MAX_DEVICES_PER_USER];
    size_t len = 0;
    /* the users' devices on other nodes, looked up in Redis all at once */
    if (f->n_appends) node_sessions_prefetch(f->srv, &f->appends[0].user, f->n_appends, sizeof *f->appends);
    hinted hints = {.user = 0, .n = 0};
    for (size_t i = 0; i < f->n_appends; i++) {
        append *a = &f->appends[i];
        size_t n = node_sessions_lookup(f->srv, a->user, entries, MAX_DEVICES_PER_USER);   /* this node's and others' */
        if (n > MAX_DEVICES_PER_USER) n = MAX_DEVICES_PER_USER;
        /* committed: the Acks of the devices it goes to find it in memory
         * (recent_inbox.h), before they can have received it */
        if (n > 0 && f->srv->recent_inbox)
            recent_inbox_note(f->srv->recent_inbox, a->user, a->user_seq, a->g->conversation_id, a->g->seq,
                              a->g->sender_user_id);
        /* the user's devices with no live session get a push (push_gateway.h
         * finds them); not for the sender's own message or a membership change */
        if (f->srv->push && !a->g->membership && a->user != a->g->sender_user_id)
            hint_once(f, &hints, a->user, a->g->conversation_id);
        for (size_t j = 0; j < n; j++) {
            f->deliveries[len++] = (outbox_delivery){entries[j].conn_id, a->user, a->user_seq, a->g->message};
            if (len == DELIVERY_RUN) {
                outbox_deliver(f->srv->outbox, f->deliveries, len);
                len = 0;
            }
        }
    }
    outbox_deliver(f->srv->outbox, f->deliveries, len);
    node_sessions_prefetch_end();
    hints_send(f, &hints);
}

static int append_order(const void *x, const void *y) {
    const append *a = x, *b = y;
    if (a->user != b->user) return a->user < b->user ? -1 : 1;
    return a->user_seq < b->user_seq ? -1 : a->user_seq > b->user_seq;
}

static int id_order(const void *x, const void *y) {
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

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

/* Puts the commit's records in key order: each user's inbox head ('H'),
 * the finished log ('L'), the entries ('X', by user and user_seq), the
 * checkpoints ('f'). The memtable inserts a batch in the order given, and in
 * key order each insert starts where the last one ended instead of
 * searching from the top (this was most of fan-out's time). Sorting by
 * (user, user_seq) also keeps every user's deliveries in order for route(). */
static void put_sorted(fanout *f) {
    qsort(f->appends, f->n_appends, sizeof *f->appends, append_order);
    for (size_t i = 0; i < f->n_appends; i++)
        if (i + 1 == f->n_appends || f->appends[i + 1].user != f->appends[i].user)
            store_put_inbox_head(f->batch, f->appends[i].user, f->appends[i].user_seq);
    qsort(f->touched_list, f->n_touched, sizeof *f->touched_list, id_order);
    for (size_t k = 0; k < f->n_touched; k++) {
        uint32_t p = f->touched_list[k];
        if (f->trim_now[p]) store_delete_log_through(f->batch, p, f->trim_now[p]);
    }
    for (size_t i = 0; i < f->n_appends; i++) {
        const append *a = &f->appends[i];
        const grant *g = a->g;
        if (a->present) continue;
        store_put_inbox(f->batch, a->user, a->user_seq, g->conversation_id, g->seq, g->sender_user_id, g->ts);
    }
    qsort(f->dirty_ids, f->n_dirty, sizeof *f->dirty_ids, id_order);
    for (size_t i = 0; i < f->n_dirty; i++)
        store_put_checkpoint(f->batch, f->dirty_ids[i], f->checkpoint[f->dirty_ids[i]]);
}

static void run_free(run *r) {
    for (size_t i = 0; i < r->n; i++) blob_unref(r->g[i].message);
    free(r->g);
    free(r->marks);
    free(r);
}

/* The run is appended: its reader may hand off another (and is woken if it
 * waits for that). */
static void run_release(run *r) {
    fanout *reader = r->from;
    if (!reader->replaying) queue_deliveries_done(reader->srv->queue, r->n);   /* room for the writers */
    run_free(r);
    atomic_fetch_sub(&reader->runs_out, 1);
    if (atomic_exchange(&reader->starved, false)) mpsc_wake(&reader->mailbox);
}

/* With --kafka: the open commit's stale entries (inbox_fence.h) marked
 * deep; how many. The clock is read here, after every head this commit
 * numbers on was read (append_run), as the argument there needs. */
_Static_assert(INBOX_FENCE_STALE_MS + 1000 <= OWNER_SESSION_MS - OWNER_SESSION_MS / 3,
               "a stale entry must be older than any a new owner can have appended (inbox_fence.h)");
static size_t mark_stale(fanout *f) {
    if (!f->srv->cfg.cluster.kafka_brokers[0]) return 0;   /* one node owns every partition for good */
    uint64_t now = clock_wall_ms();
    size_t stale = 0;
    for (size_t i = 0; i < f->n_appends; i++) {
        append *a = &f->appends[i];
        if (a->deep || !inbox_fence_stale(a->g->ts, now)) continue;
        a->deep = true;
        stale++;
    }
    atomic_fetch_add(&stale_entries_total, stale);
    return stale;
}

/* The open commit: its entries and checkpoints in one batch, then routing,
 * then its runs are released. A failed commit is retried: nothing after it
 * may be numbered on top of entries that are not there. */
static void commit_open(fanout *f) {
    if (f->n_held == 0) return;
    for (size_t k = 0; k < f->n_touched; k++) {
        uint32_t p = f->touched_list[k];
        f->trim_now[p] = trim_due(f, p);
    }
    if (mark_stale(f)) {
        atomic_fetch_add(&stale_checks_total, 1);
        f->fence_check = true;
    }
    if (f->fence_check) {   /* a cold user had entries past its hint: some may be these */
        renumber(f);
        f->fence_check = false;
    }
    put_sorted(f);
    /* Not fsynced: the writer's next fsync covers this too (one write-ahead
     * log), and if a power cut takes it, the checkpoint goes with the
     * entries and the replay numbers them again the same way. */
    if (store_batch_count(f->batch) > 0) commit_until_done(f);
    for (size_t i = 0; i < f->n_dirty; i++) {
        uint32_t id = f->dirty_ids[i];
        f->recorded[id] = f->checkpoint[id];
        f->dirty[id] = false;
    }
    f->n_dirty = 0;
    for (size_t k = 0; k < f->n_touched; k++) {
        uint32_t p = f->touched_list[k];
        if (f->trim_now[p]) f->trimmed_through[p] = f->trim_now[p];
        f->trim_now[p] = 0;
        f->touched[p] = false;
        for (uint32_t u = f->index; u < f->user_partitions; u += f->set->n) {
            uint32_t id = checkpoint_id(p, u, f->user_partitions);
            raise_done(&f->set->done[id], f->checkpoint[id]);
        }
    }
    f->n_touched = 0;
    METRIC_ADD(inbox_appends_total, f->n_appends);
    if (!f->replaying) route(f);   /* a replay runs before anyone can be connected */
    f->n_appends = 0;
    for (size_t i = 0; i < f->n_held; i++) run_release(f->held[i]);
    f->n_held = 0;
}

/* Appends what the readers handed this owner (up to RUNS_PER_TURN runs):
 * one commit, or more when the entries pass MAX_APPENDS_PER_BATCH. Returns
 * the runs taken. */
static size_t drain_mailbox(fanout *f) {
    unsigned handovers = atomic_load(&f->set->handovers);
    if (handovers != f->heads_handover) {   /* between commits: nothing numbered is uncommitted */
        u64map_free(&f->heads);             /* another node appended to these inboxes */
        f->heads_handover = handovers;
    }
    run *runs[RUNS_PER_TURN];
    size_t n = mpsc_pop_many(&f->mailbox, (void **)runs, RUNS_PER_TURN);
    for (size_t i = 0; i < n; i++) {
        if (f->n_appends && f->n_appends + runs[i]->n > MAX_APPENDS_PER_BATCH) commit_open(f);
        append_run(f, runs[i]);
        f->held[f->n_held++] = runs[i];
    }
    commit_open(f);
    return n;
}

/* ------------------------------------------------------------ the reader */

static bool has_room(const fanout *f) {
    return atomic_load(&f->runs_out) + (long)f->set->n <= (long)(RUN_SETS_OUT * f->set->n);
}

/* Waits until this reader may hand off another set of runs, appending what
 * it is handed meanwhile: the owners it waits for may be waiting for it. */
static void wait_for_room(fanout *f) {
    while (!has_room(f)) {
        atomic_store(&f->starved, true);
        if (has_room(f)) break;
        if (drain_mailbox(f)) continue;
        mpsc_wait(&f->mailbox, STARVED_WAIT_MS);
    }
    atomic_store(&f->starved, false);
}

static void hand_off(fanout *f) {
    if (f->n_marks == 0) return;
    wait_for_room(f);
    atomic_fetch_add(&f->runs_out, (long)f->set->n);
    for (uint32_t j = 0; j < f->set->n; j++) {
        run *r = f->building[j];
        if (!r && !(r = calloc(1, sizeof *r))) abort();
        r->from = f;
        r->marks = malloc(f->n_marks * sizeof *r->marks);
        if (!r->marks) abort();
        memcpy(r->marks, f->marks, f->n_marks * sizeof *r->marks);
        r->n_marks = f->n_marks;
        f->building[j] = NULL;
        /* never full: sized for every reader's RUN_SETS_OUT sets */
        if (mpsc_push(&f->set->threads[j]->mailbox, r)) abort();
    }
    for (size_t k = 0; k < f->n_marks; k++) f->mark_of[f->marks[k].partition] = -1;
    f->n_marks = 0;
    f->building_grants = 0;
}

static void add_grant(fanout *f, uint32_t owner, grant g) {
    run *r = f->building[owner];
    if (!r) {
        if (!(r = calloc(1, sizeof *r))) abort();
        f->building[owner] = r;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        grant *grown = realloc(r->g, cap * sizeof *grown);
        if (!grown) abort();
        r->g = grown;
        r->cap = cap;
    }
    blob_ref(g.message);
    r->g[r->n++] = g;
    f->building_grants++;
}

/* items[0..n), read once: their grants to the owners of their members'
 * user partitions, handed off at the end or when a hand-off reaches
 * MAX_APPENDS_PER_BATCH entries. */
static void read_items(fanout *f, queue_item *const *items, size_t n) {
    size_t group_max = f->srv->cfg.max_group_members;
    unsigned handovers = atomic_load(&f->set->handovers);
    if (handovers != f->members_handover) {   /* another node may have changed who is a member */
        forget_members(f);
        f->members_handover = handovers;
    }
    for (size_t i = 0; i < n; i++) {
        const queue_item *it = items[i];
        if (f->building_grants && f->building_grants + group_max > MAX_APPENDS_PER_BATCH) hand_off(f);
        uint32_t p = it->partition < f->partitions ? it->partition : 0;
        /* A partition's offsets reach its reader in increasing order, but a
         * hand-over replay (fanout_replay while running) publishes again
         * entries this node's queue may still hold: this node stored them
         * before its partitions were revoked and given back, and its revoke
         * stopped waiting for fan-out (HANDOFF_WAIT_MS), or a writer was
         * still finishing the commit. The owners skip what their
         * checkpoints cover, but those are raised at the end of each run:
         * two copies read into one run would both be appended. So the
         * second copy is dropped here. */
        if (it->offset <= f->read_through[p]) {
            if (!f->replaying) queue_deliveries_done(f->srv->queue, it->deliveries);
            atomic_fetch_add(&read_twice_total, 1);
            continue;
        }
        f->read_through[p] = it->offset;
        if (f->mark_of[p] < 0) {
            f->mark_of[p] = (int32_t)f->n_marks;
            f->marks[f->n_marks++] = (mark){p, it->offset};
        } else if (it->offset > f->marks[f->mark_of[p]].offset) {
            f->marks[f->mark_of[p]].offset = it->offset;
        }
        const member_list *ml = members_of(f, it->conversation_id, it->membership);
        uint32_t receivers = 0;
        for (size_t k = 0; k < ml->n; k++) {
            const member *m = &ml->m[k];
            if (!receives(m, it->seq)) continue;
            uint32_t owner = owner_of(f->set, user_partition(m->user, f->user_partitions));
            add_grant(f, owner, (grant){m->user, it->offset, it->conversation_id, it->seq, it->sender_user_id,
                                        it->ts, p, it->membership, it->replayed, it->message});
            receivers++;
        }
        /* its deliveries now count exactly, until their run is routed (run_release) */
        if (!f->replaying) queue_deliveries_counted(f->srv->queue, it, receivers);
        METRIC_INC(fanout_messages_total);
    }
    hand_off(f);
}

/* ----------------------------------------------------------------- replay */

struct replay {
    server *srv;
    fanout *f;          /* at start: the private thread that reads and owns everything */
    queue *to;          /* running (a hand-over): the items go to the running threads' queue */
    uint32_t partition;
    queue_item *items[ITEMS_PER_BATCH];
    size_t n;
    uint64_t entries;   /* replayed */
    uint64_t expired;   /* entries whose message retention removed: skipped */
    int failed;
};

static void replay_flush(struct replay *r) {
    if (r->to) {
        /* behind whatever the queue holds of the partition, ahead of what
         * the writers publish after this returns; a closed queue (the
         * server stops) frees them: the next start replays them */
        if (queue_publish_many(r->to, r->items, r->n)) r->failed = 1;
        r->n = 0;
        return;
    }
    /* one thread reads and owns everything: what it hands off, it appends */
    read_items(r->f, r->items, r->n);
    for (size_t i = 0; i < r->n; i++) queue_item_free(r->items[i]);
    r->n = 0;
    while (drain_mailbox(r->f)) {}
}

static int replay_entry(void *ud, uint64_t offset, uint64_t conv, uint64_t seq) {
    struct replay *r = ud;
    store_bytes raw;
    int found = store_get_message(r->srv->store, conv, seq, &raw);
    if (found == 0 && r->srv->cfg.retention_ms > 0) {
        /* expired: retention removed it. A checkpoint may lag the entries
         * its owner fanned out (up to CHECKPOINT_LAG offsets, see the top),
         * so replay reads entries fanned out long ago; and one that expired
         * before it was fanned out would be invisible to sync anyway. */
        r->expired++;
        return 0;
    }
    if (found != 1) {
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
    /* Several chat nodes (--kafka): the fan-out that numbered this entry
     * may have died between its inbox appends and the commit of its
     * checkpoint, and another node's appends since may have carried the
     * inbox hint past them, so the cold-head check would not look (see
     * inbox_fence.h, deep). One node alone: the hint stays behind. */
    it->replayed = r->srv->cfg.cluster.kafka_brokers[0] != 0;
    it->message = blob_new(raw.data, raw.len);
    parley__v1__message__free_unpacked(m, NULL);
    store_bytes_free(&raw);
    r->items[r->n++] = it;
    r->entries++;
    if (r->n == ITEMS_PER_BATCH) replay_flush(r);
    return r->failed;
}

/* The least of partition p's checkpoints in set, each first raised to what
 * the store holds when raise is set (another node fanned out p meanwhile).
 * -1 when the store cannot be read. */
static int least_checkpoint(server *srv, fanout_set *set, uint32_t p, bool raise, uint64_t *least) {
    *least = UINT64_MAX;
    for (uint32_t u = 0; u < set->user_partitions; u++) {
        uint32_t id = checkpoint_id(p, u, set->user_partitions);
        uint64_t stored = 0;
        if (raise && store_get_checkpoint(srv->store, id, &stored) < 0) return -1;
        if (raise) raise_done(&set->done[id], stored);
        uint64_t c = atomic_load(&set->done[id]);
        if (c < *least) *least = c;
    }
    return 0;
}

static void fanout_free(fanout *f) {
    if (!f) return;
    run *left[RUNS_PER_TURN];
    size_t n;
    while ((n = mpsc_pop_many(&f->mailbox, (void **)left, RUNS_PER_TURN)) > 0)
        for (size_t i = 0; i < n; i++) run_free(left[i]);
    for (uint32_t j = 0; f->building && j < f->set->n; j++)
        if (f->building[j]) run_free(f->building[j]);
    mpsc_destroy(&f->mailbox);
    free(f->building);
    free(f->marks);
    free(f->mark_of);
    free(f->read_through);
    free(f->checkpoint);
    free(f->recorded);
    free(f->dirty);
    free(f->dirty_ids);
    free(f->touched);
    free(f->touched_list);
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
    if (mpsc_init(&f->mailbox, (size_t)RUN_SETS_OUT * set->n + 1)) {
        free(f);
        return NULL;
    }
    f->batch = store_batch_new();
    f->cap_appends = MAX_APPENDS_PER_BATCH + (size_t)srv->cfg.max_group_members;
    f->appends = malloc(f->cap_appends * sizeof *f->appends);
    f->deliveries = malloc(DELIVERY_RUN * sizeof *f->deliveries);
    f->building = calloc(set->n, sizeof *f->building);
    f->marks = malloc(f->partitions * sizeof *f->marks);
    f->mark_of = malloc(f->partitions * sizeof *f->mark_of);
    f->read_through = calloc(f->partitions, sizeof *f->read_through);
    size_t ids = (size_t)f->partitions * f->user_partitions;
    f->checkpoint = calloc(ids, sizeof *f->checkpoint);
    f->recorded = calloc(ids, sizeof *f->recorded);
    f->dirty = calloc(ids, sizeof *f->dirty);
    f->dirty_ids = calloc(ids, sizeof *f->dirty_ids);
    f->touched = calloc(f->partitions, sizeof *f->touched);
    f->touched_list = calloc(f->partitions, sizeof *f->touched_list);
    f->trimmed_through = calloc(f->partitions, sizeof *f->trimmed_through);
    f->trim_now = calloc(f->partitions, sizeof *f->trim_now);
    if (!f->batch || !f->appends || !f->deliveries || !f->building || !f->marks || !f->mark_of || !f->read_through ||
        !f->checkpoint || !f->recorded || !f->dirty || !f->dirty_ids || !f->touched || !f->touched_list ||
        !f->trimmed_through || !f->trim_now)
        abort();
    for (uint32_t p = 0; p < f->partitions; p++) f->mark_of[p] = -1;
    for (size_t id = 0; id < ids; id++) f->checkpoint[id] = f->recorded[id] = atomic_load(&set->done[id]);
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

/* Each partition's log past the least checkpoint of its user partitions,
 * in the order given (all: partition 0 first: a store from before
 * partitions has its whole log there, and those entries are older than any
 * in the other partitions' logs, which only a start that finished this
 * replay can have written). append_run skips the inboxes whose checkpoint
 * already covers an entry, so reading from the least is exact. */
int fanout_replay(server *srv, const uint32_t *parts, size_t n, uint64_t *replayed) {
    bool running = srv->fanout != NULL;
    fanout_set *set = running ? srv->fanout->set : set_new(srv, 1);
    if (!set) return -1;
    struct replay *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->srv = srv;
    if (running) {
        r->to = srv->queue;
        atomic_fetch_add(&set->handovers, 1);   /* before any item: readers and owners reload */
    } else {
        r->f = set->threads[0];
        r->f->replaying = true;
    }
    size_t count = parts ? n : set->partitions;
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        uint32_t p = parts ? parts[i] : (uint32_t)i;
        uint64_t from = 0;
        if (p >= set->partitions) continue;
        if (least_checkpoint(srv, set, p, running, &from)) {
            rc = -1;
            break;
        }
        uint64_t before = r->entries;
        r->partition = p;
        rc = store_scan_log(srv->store, p, from, replay_entry, r);
        if (r->n) replay_flush(r);
        rc = rc || r->failed ? -1 : 0;
        if (r->entries > before)
            log_info("fanout: replayed %llu entries of partition %u past log offset %llu%s",
                     (unsigned long long)(r->entries - before), p, (unsigned long long)from,
                     running ? " (handed over)" : "");
    }
    for (size_t i = 0; i < r->n; i++) queue_item_free(r->items[i]);   /* a scan that failed midway */
    if (r->expired)
        log_info("fanout: replay skipped %llu log entries whose messages retention removed",
                 (unsigned long long)r->expired);
    if (!running) METRIC_ADD(fanout_replayed_total, r->entries);
    if (replayed) *replayed = r->entries;
    free(r);
    if (!running) set_free(set);
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

/* Waits for items (when it may read) or runs, at most timeout_ms. */
static void wait_for_work(fanout *f, bool items_too, int timeout_ms) {
    if (mpsc_depth(&f->mailbox) > 0) return;
    struct pollfd p[2] = {{.fd = f->mailbox.wake_fd, .events = POLLIN},
                          {.fd = queue_wake_fd(f->srv->queue, f->index), .events = POLLIN}};
    if (poll(p, items_too ? 2 : 1, timeout_ms) < 0) return;   /* EINTR: the loop looks again */
    mpsc_drain_wakeup(&f->mailbox);   /* the queue's is cleared by queue_consume */
}

/* This reader will hand off nothing more; once every reader is there and
 * the mailboxes are empty, the threads stop. */
static void reading_finished(fanout *f) {
    f->reading_done = true;
    if (atomic_fetch_add(&f->set->readers_done, 1) + 1 == f->set->n)
        for (uint32_t j = 0; j < f->set->n; j++) mpsc_wake(&f->set->threads[j]->mailbox);
}

/* Tests hold fan-out behind the writer to see what it does when the store is
 * ahead of it (test_membership) */
static test_hold reading_hold = {.env_name = "PARLEY_TEST_HOLD_FANOUT", .what = "fan-out readers"};

static void *fanout_main(void *arg) {
    fanout *f = arg;
    pthread_setname_np(pthread_self(), f->name);   /* seen in top -H, perf */
    queue_item *items[ITEMS_PER_BATCH];
    for (;;) {
        if (f->index == 0) fan_presence(f);
        size_t ran = drain_mailbox(f), n = 0;
        bool may_read = !f->reading_done && has_room(f);
        if (may_read) {
            test_hold_wait(&reading_hold);
            bool closed = queue_closed(f->srv->queue);   /* before the last look: nothing comes after it */
            n = queue_consume(f->srv->queue, f->index, items, ITEMS_PER_BATCH, 0);
            atomic_store(&g_metrics.fanout_queue_depth, (long)queue_depth(f->srv->queue));
            if (n) {
                read_items(f, items, n);
                for (size_t i = 0; i < n; i++) queue_item_free(items[i]);
            } else if (closed) {
                reading_finished(f);
            }
        }
        if (f->reading_done && atomic_load(&f->set->readers_done) == f->set->n && mpsc_depth(&f->mailbox) == 0)
            break;
        if (ran || n) continue;
        if (!f->reading_done && !may_read) atomic_store(&f->starved, true);
        wait_for_work(f, may_read, may_read ? PRESENCE_FLUSH_MS : STARVED_WAIT_MS);
        atomic_store(&f->starved, false);
    }
    return NULL;
}

fanout *fanout_start(server *srv) {
    fanout_set *set = set_new(srv, fanout_threads(srv));
    if (!set) return NULL;
    /* before any send can be published: workers start after this */
    queue_bound_deliveries(srv->queue, srv->cfg.fanout_pending_max, srv->cfg.max_group_members);
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
