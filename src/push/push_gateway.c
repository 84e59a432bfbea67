/* push_gateway.c -- see push_gateway.h. One thread owns everything here
 * but the hint queue (a mutex-guarded ring the fan-out threads fill). */
#include "push/push_gateway.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/node_forward.h"
#include "core/clock.h"
#include "core/log.h"
#include "push/push_subscribers.h"
#include "push/vapid.h"
#include "push/webpush_provider.h"

enum {
    HINT_MAX = 65536,               /* queued (user, conversation) pairs; past it they are dropped */
    HINT_BATCH = 1024,              /* taken from the queue at once */
    DEVICE_TABLE = 1 << 16,         /* coalescing state of this many devices (slots) */
    DEVICE_TABLE_LIVE = DEVICE_TABLE / 4 * 3,
    MAX_DEVICES_PER_USER = 64,
    RETRY_FIRST_MS = 1000,
    RETRY_MAX_MS = 60000,
    POLL_MAX_MS = 1000,
    HOUR_MS = 3600 * 1000,
};

static atomic_ulong sent_total, failed_total, coalesced_total, gone_total, retried_total, rate_limited_total,
    hints_dropped_total, skipped_online_total, hints_total, hints_unsubscribed_total, hints_handled_total;
static atomic_long in_flight_now;
/* the running gateway's set, for the gauge (push_metrics_render has no gateway) */
static push_subscribers *_Atomic g_subs_for_metrics;

typedef struct hint {
    uint64_t user, conv;
    uint32_t messages;              /* the fan-out's commit had this many for (user, conv) */
} hint;

typedef struct device_state {
    uint64_t user;                  /* 0: free slot */
    uint32_t device;
    bool busy;                      /* a notification in flight or waiting to be retried */
    uint64_t last_sent_ms;
    uint64_t hour_start_ms;
    uint32_t hour_count;
} device_state;

typedef struct job {
    struct push_gateway *g;
    uint64_t user, conv;
    uint32_t device, attempts;
    uint64_t due_ms;
    char endpoint[WEBPUSH_ENDPOINT_MAX + 1];   /* what was sent to: a 410 forgets only that one */
    struct job *next;               /* waiting for a retry */
    struct job *all_prev, *all_next; /* every job, so a stop frees those in flight too */
} job;

struct push_gateway {
    server *srv;
    push_config cfg;
    vapid_key *vapid;
    push_provider *provider;
    push_subscribers *subs;         /* who has a subscription: any thread reads it */
    pthread_t thread;
    pthread_mutex_t lock;           /* the ring and stopping */
    hint *ring;
    size_t head, n;
    bool stopping;
    /* the push thread's own */
    device_state *devices;
    size_t n_devices;
    job *waiting;
    job *all;
    size_t n_jobs;                  /* in flight and waiting */
    double tokens;                  /* the global bucket */
    uint64_t tokens_ms;
};

/* ------------------------------------------------------------ device state */

static size_t slot_of(uint64_t user, uint32_t device) {
    uint64_t h = (user ^ ((uint64_t)device << 40 | device)) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 48) & (DEVICE_TABLE - 1);
}

static device_state *state_find(push_gateway *g, uint64_t user, uint32_t device, bool create) {
    for (size_t i = slot_of(user, device), probes = 0; probes < DEVICE_TABLE; i = (i + 1) & (DEVICE_TABLE - 1), probes++) {
        device_state *s = &g->devices[i];
        if (s->user == user && s->device == device) return s;
        if (s->user == 0) {
            if (!create || g->n_devices >= DEVICE_TABLE_LIVE) return NULL;
            memset(s, 0, sizeof *s);
            s->user = user;
            s->device = device;
            g->n_devices++;
            return s;
        }
    }
    return NULL;
}

/* Keeps only the states that still matter (busy, or within a coalescing
 * window or an hour of their last notification) when the table is full. */
static void state_sweep(push_gateway *g, uint64_t now) {
    device_state *old = g->devices;
    g->devices = calloc(DEVICE_TABLE, sizeof *g->devices);
    if (!g->devices) abort();
    g->n_devices = 0;
    uint64_t keep_ms = g->cfg.coalesce_ms > HOUR_MS ? g->cfg.coalesce_ms : HOUR_MS;
    for (size_t i = 0; i < DEVICE_TABLE; i++) {
        if (!old[i].user || (!old[i].busy && now - old[i].last_sent_ms >= keep_ms)) continue;
        device_state *s = state_find(g, old[i].user, old[i].device, true);
        if (s) *s = old[i];
    }
    free(old);
}

/* ------------------------------------------------------------------ jobs */

static bool global_bucket_take(push_gateway *g, uint64_t now) {
    double rate = g->cfg.rate;
    g->tokens += (double)(now - g->tokens_ms) * rate / 1000.0;
    g->tokens_ms = now;
    if (g->tokens > rate) g->tokens = rate;   /* a burst of one second's worth */
    if (g->tokens < 1) return false;
    g->tokens -= 1;
    return true;
}

static void job_finish(job *j) {
    push_gateway *g = j->g;
    device_state *s = state_find(g, j->user, j->device, false);
    if (s) s->busy = false;
    if (j->all_prev) j->all_prev->all_next = j->all_next;
    else g->all = j->all_next;
    if (j->all_next) j->all_next->all_prev = j->all_prev;
    g->n_jobs--;
    free(j);
}

/* The user's live sessions: this node's, and with many nodes those the
 * Redis session registry holds on the others (the inbox owner decides
 * push for every device wherever it is connected; a failed Redis lookup
 * leaves this node's only, and a device online elsewhere may get a
 * notification it did not need). */
static size_t sessions_of(push_gateway *g, uint64_t user, registry_entry *out, size_t max) {
    return g->srv->forward ? node_sessions_lookup(g->srv, user, out, max) : registry_lookup(g->srv->registry, user, out, max);
}

static bool device_online(push_gateway *g, uint64_t user, uint32_t device) {
    registry_entry entries[MAX_DEVICES_PER_USER];
    size_t n = sessions_of(g, user, entries, MAX_DEVICES_PER_USER);
    if (n > MAX_DEVICES_PER_USER) n = MAX_DEVICES_PER_USER;
    for (size_t i = 0; i < n; i++)
        if (entries[i].device_id == device) return true;
    return false;
}

/* forgets the subscription the push service says is gone, unless the
 * device registered another one meanwhile */
static void forget_subscription(push_gateway *g, const job *j) {
    Parley__Store__PushSubscription *sub = NULL;
    if (store_get_push_subscription(g->srv->store, j->user, j->device, &sub) != 1) return;
    bool same = sub->endpoint && strcmp(sub->endpoint, j->endpoint) == 0;
    parley__store__push_subscription__free_unpacked(sub, NULL);
    if (!same) return;
    store_batch *b = store_batch_new();
    if (!b) return;
    store_delete_push_subscription(b, j->user, j->device);
    if (store_commit(g->srv->store, b, false) != 0) {
        log_warn("push: cannot remove a gone subscription");
    } else {
        push_subscribers_remove(g->subs, j->user, j->device);
        /* a registration that committed in between keeps its device in the set */
        if (store_get_push_subscription(g->srv->store, j->user, j->device, &sub) == 1) {
            push_subscribers_add(g->subs, j->user, j->device);
            parley__store__push_subscription__free_unpacked(sub, NULL);
        }
    }
    store_batch_free(b);
}

static uint64_t backoff_ms(uint32_t attempts) {
    uint64_t d = RETRY_FIRST_MS;
    for (uint32_t i = 1; i < attempts && d < RETRY_MAX_MS; i++) d *= 2;
    if (d > RETRY_MAX_MS) d = RETRY_MAX_MS;
    return d + (uint64_t)rand() % (d / 4 + 1);   /* jitter: retries of many devices spread out */
}

static void job_done(void *ud, push_outcome outcome, int status, uint64_t retry_after_ms) {
    job *j = ud;
    push_gateway *g = j->g;
    switch (outcome) {
    case PUSH_DELIVERED:
        atomic_fetch_add(&sent_total, 1);
        break;
    case PUSH_GONE: {
        forget_subscription(g, j);
        atomic_fetch_add(&gone_total, 1);   /* after: whoever sees it finds the subscription gone */
        /* a new subscription of the device is not held back by the old one's window */
        device_state *s = state_find(g, j->user, j->device, false);
        if (s) s->last_sent_ms = 0;
        break;
    }
    case PUSH_RETRY:
        if (j->attempts < g->cfg.max_attempts) {
            atomic_fetch_add(&retried_total, 1);
            uint64_t wait = backoff_ms(j->attempts);
            if (retry_after_ms > wait) wait = retry_after_ms;
            j->due_ms = clock_mono_ms() + wait;
            j->next = g->waiting;
            g->waiting = j;
            return;
        }
        log_warn("push: gave up on a notification after %u attempts (last status %d)", j->attempts, status);
        /* fall through */
    case PUSH_FAILED:
        atomic_fetch_add(&failed_total, 1);
        if (outcome == PUSH_FAILED) log_warn("push: the push service refused a notification (status %d)", status);
        break;
    }
    job_finish(j);
}

/* One try of j: the device is asked about again (it may be online by now,
 * or have a new subscription). */
static void job_send(job *j) {
    push_gateway *g = j->g;
    if (device_online(g, j->user, j->device)) {
        atomic_fetch_add(&skipped_online_total, 1);
        /* nothing went out: the window does not hold back the next one */
        device_state *s = state_find(g, j->user, j->device, false);
        if (s) s->last_sent_ms = 0;
        job_finish(j);
        return;
    }
    Parley__Store__PushSubscription *sub = NULL;
    if (store_get_push_subscription(g->srv->store, j->user, j->device, &sub) != 1) {
        job_finish(j);   /* unregistered meanwhile */
        return;
    }
    snprintf(j->endpoint, sizeof j->endpoint, "%s", sub->endpoint ? sub->endpoint : "");
    /* the payload: the conversation and a count, never anything of a message */
    char payload[96], topic[32];
    int len = snprintf(payload, sizeof payload, "{\"conversation_id\":\"%llu\",\"count\":1}",
                       (unsigned long long)j->conv);
    snprintf(topic, sizeof topic, "c%llu", (unsigned long long)j->conv);
    push_device d = {j->user, j->device};
    j->attempts++;
    int rc = g->provider->send(g->provider->impl, &d, sub, (const uint8_t *)payload, (size_t)len, g->cfg.ttl_s,
                               PUSH_URGENCY_NORMAL, topic, job_done, j);
    parley__store__push_subscription__free_unpacked(sub, NULL);
    if (rc != 0) {
        atomic_fetch_add(&failed_total, 1);
        job_finish(j);
    }
}

static void retry_due(push_gateway *g, uint64_t now) {
    job **p = &g->waiting;
    while (*p) {
        job *j = *p;
        if (j->due_ms <= now) {
            *p = j->next;
            job_send(j);
        } else {
            p = &j->next;
        }
    }
}

/* ---------------------------------------------------------------- hints */

struct device_list {
    uint32_t ids[MAX_DEVICES_PER_USER];
    size_t n;
};

static int collect_device(void *ud, uint32_t device, const Parley__Store__Device *d) {
    (void)d;
    struct device_list *l = ud;
    if (l->n < MAX_DEVICES_PER_USER) l->ids[l->n++] = device;
    return l->n >= MAX_DEVICES_PER_USER;
}

static bool has_subscription(push_gateway *g, uint64_t user, uint32_t device) {
    Parley__Store__PushSubscription *sub = NULL;
    int found = store_get_push_subscription(g->srv->store, user, device, &sub);
    if (sub) parley__store__push_subscription__free_unpacked(sub, NULL);
    return found == 1;
}

static void take_hint(push_gateway *g, const hint *h) {
    registry_entry online[MAX_DEVICES_PER_USER];
    size_t n_online = sessions_of(g, h->user, online, MAX_DEVICES_PER_USER);
    if (n_online > MAX_DEVICES_PER_USER) n_online = MAX_DEVICES_PER_USER;
    struct device_list devices = {.n = 0};
    if (store_scan_devices(g->srv->store, h->user, collect_device, &devices) < 0) return;
    uint64_t now = clock_mono_ms();
    for (size_t i = 0; i < devices.n; i++) {
        uint32_t device = devices.ids[i];
        bool is_online = false;
        for (size_t k = 0; k < n_online && !is_online; k++) is_online = online[k].device_id == device;
        if (is_online || !has_subscription(g, h->user, device)) continue;
        device_state *s = state_find(g, h->user, device, true);
        if (!s) {
            state_sweep(g, now);
            s = state_find(g, h->user, device, true);
        }
        if (!s) {
            atomic_fetch_add(&hints_dropped_total, 1);
            continue;
        }
        if (s->busy || (s->last_sent_ms && now - s->last_sent_ms < g->cfg.coalesce_ms)) {
            atomic_fetch_add(&coalesced_total, h->messages);
            continue;
        }
        if (now - s->hour_start_ms >= HOUR_MS || !s->hour_start_ms) {
            s->hour_start_ms = now;
            s->hour_count = 0;
        }
        if (s->hour_count >= g->cfg.device_per_hour || !global_bucket_take(g, now)) {
            atomic_fetch_add(&rate_limited_total, 1);
            continue;
        }
        atomic_fetch_add(&coalesced_total, h->messages - 1);   /* the others this one stands for */
        job *j = calloc(1, sizeof *j);
        if (!j) abort();
        *j = (job){.g = g, .user = h->user, .conv = h->conv, .device = device};
        s->busy = true;
        s->last_sent_ms = now;
        s->hour_count++;
        j->all_next = g->all;
        if (g->all) g->all->all_prev = j;
        g->all = j;
        g->n_jobs++;
        job_send(j);
    }
}

void push_gateway_hint(push_gateway *g, uint64_t user, uint64_t conversation, uint32_t messages) {
    if (messages == 0) return;
    /* nobody to notify: not queued, the push thread never sees it */
    if (!push_subscribers_any(g->subs, user)) {
        atomic_fetch_add_explicit(&hints_unsubscribed_total, messages, memory_order_relaxed);
        return;
    }
    pthread_mutex_lock(&g->lock);
    bool was_empty = g->n == 0;
    if (g->n < HINT_MAX) {
        g->ring[(g->head + g->n) % HINT_MAX] = (hint){user, conversation, messages};
        g->n++;
    } else {
        atomic_fetch_add(&hints_dropped_total, messages);
    }
    pthread_mutex_unlock(&g->lock);
    if (was_empty) g->provider->wakeup(g->provider->impl);
}

void push_gateway_subscribed(push_gateway *g, uint64_t user, uint32_t device) {
    if (g) push_subscribers_add(g->subs, user, device);
}

void push_gateway_unsubscribed(push_gateway *g, uint64_t user, uint32_t device) {
    if (g) push_subscribers_remove(g->subs, user, device);
}

/* -------------------------------------------------------------- the thread */

static void *push_main(void *arg) {
    push_gateway *g = arg;
    pthread_setname_np(pthread_self(), "parley-push");
    hint *batch = malloc(HINT_BATCH * sizeof *batch);
    if (!batch) abort();
    for (;;) {
        size_t n = 0, left = 0;
        pthread_mutex_lock(&g->lock);
        if (g->stopping) {
            pthread_mutex_unlock(&g->lock);
            break;
        }
        /* jobs are bounded: hints wait in the ring (and past it are dropped) */
        while (n < HINT_BATCH && g->n > 0 && g->n_jobs + n < g->cfg.in_flight) {
            batch[n++] = g->ring[g->head];
            g->head = (g->head + 1) % HINT_MAX;
            g->n--;
        }
        left = g->n;
        pthread_mutex_unlock(&g->lock);
        /* many nodes: the batch's users are looked up in Redis at once
         * (pipelined, one wait), not one round trip per hint; the first
         * try of each job below answers from it too */
        if (g->srv->forward && n) node_sessions_prefetch(g->srv, &batch[0].user, n, sizeof batch[0]);
        for (size_t i = 0; i < n; i++) {
            take_hint(g, &batch[i]);
            /* after: a test waits on it to know a hint was handled */
            atomic_fetch_add(&hints_total, batch[i].messages);
            atomic_fetch_add(&hints_handled_total, 1);
        }
        node_sessions_prefetch_end();
        uint64_t now = clock_mono_ms();
        retry_due(g, now);
        int timeout = POLL_MAX_MS;
        if (left && g->n_jobs < g->cfg.in_flight) timeout = 0;
        for (const job *j = g->waiting; j; j = j->next)
            if (j->due_ms <= now) timeout = 0;
            else if (j->due_ms - now < (uint64_t)timeout) timeout = (int)(j->due_ms - now);
        g->provider->poll(g->provider->impl, timeout);
        atomic_store(&in_flight_now, (long)g->provider->in_flight(g->provider->impl));
    }
    free(batch);
    return NULL;
}

static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

push_gateway *push_gateway_start(server *srv) {
    static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
    pthread_once(&curl_once, curl_init_once);
    push_gateway *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->srv = srv;
    g->cfg = srv->cfg.push;
    g->vapid = vapid_load_or_create(srv->cfg.data_dir);
    g->provider = g->vapid ? webpush_provider_new(&g->cfg, g->vapid) : NULL;
    g->ring = malloc(HINT_MAX * sizeof *g->ring);
    g->devices = calloc(DEVICE_TABLE, sizeof *g->devices);
    g->subs = push_subscribers_new();
    if (g->subs) push_subscribers_load(g->subs, srv->store);   /* on failure it says "maybe" for all */
    g->tokens = g->cfg.rate;
    g->tokens_ms = clock_mono_ms();
    pthread_mutex_init(&g->lock, NULL);
    if (!g->provider || !g->ring || !g->devices || !g->subs || pthread_create(&g->thread, NULL, push_main, g) != 0) {
        log_error("push: cannot start the push gateway");
        webpush_provider_free(g->provider);
        vapid_free(g->vapid);
        pthread_mutex_destroy(&g->lock);
        free(g->ring);
        free(g->devices);
        push_subscribers_free(g->subs);
        free(g);
        return NULL;
    }
    g_subs_for_metrics = g->subs;
    log_info("push: Web Push on, VAPID key %s, one notification per device per %llu ms, %zu subscriptions",
             vapid_public_key_b64(g->vapid), (unsigned long long)g->cfg.coalesce_ms, push_subscribers_count(g->subs));
    return g;
}

void push_gateway_stop(push_gateway *g) {
    if (!g) return;
    g_subs_for_metrics = NULL;
    pthread_mutex_lock(&g->lock);
    g->stopping = true;
    pthread_mutex_unlock(&g->lock);
    g->provider->wakeup(g->provider->impl);
    pthread_join(g->thread, NULL);
    /* the provider abandons what is in flight without completions */
    webpush_provider_free(g->provider);
    while (g->all) {
        job *j = g->all;
        g->all = j->all_next;
        free(j);
    }
    vapid_free(g->vapid);
    pthread_mutex_destroy(&g->lock);
    free(g->ring);
    free(g->devices);
    push_subscribers_free(g->subs);
    free(g);
}

const uint8_t *push_gateway_vapid_key(const push_gateway *g) { return vapid_public_key(g->vapid); }
const char *push_gateway_vapid_key_b64(const push_gateway *g) { return vapid_public_key_b64(g->vapid); }

size_t push_metrics_render(char *out, size_t cap) {
    int n = snprintf(out, cap,
        "# HELP parley_push_sent_total Push notifications the push service accepted.\n"
        "# TYPE parley_push_sent_total counter\nparley_push_sent_total %lu\n"
        "# HELP parley_push_failed_total Push notifications given up on (refused, or out of attempts).\n"
        "# TYPE parley_push_failed_total counter\nparley_push_failed_total %lu\n"
        "# HELP parley_push_coalesced_total Messages for an offline device not notified: one was sent within the coalescing window.\n"
        "# TYPE parley_push_coalesced_total counter\nparley_push_coalesced_total %lu\n"
        "# HELP parley_push_gone_total Subscriptions the push service said are gone (404/410); removed.\n"
        "# TYPE parley_push_gone_total counter\nparley_push_gone_total %lu\n"
        "# HELP parley_push_retried_total Push requests retried after 429, 5xx or no answer.\n"
        "# TYPE parley_push_retried_total counter\nparley_push_retried_total %lu\n"
        "# HELP parley_push_rate_limited_total Notifications not sent: over --push-device-per-hour or --push-rate.\n"
        "# TYPE parley_push_rate_limited_total counter\nparley_push_rate_limited_total %lu\n"
        "# HELP parley_push_hints_total Messages for a user the push gateway looked at (for their devices with no live session).\n"
        "# TYPE parley_push_hints_total counter\nparley_push_hints_total %lu\n"
        "# HELP parley_push_hints_dropped_total Messages the push gateway could not take (its queue or device table full).\n"
        "# TYPE parley_push_hints_dropped_total counter\nparley_push_hints_dropped_total %lu\n"
        "# HELP parley_push_hints_unsubscribed_total Messages for a user with no push subscription: dropped before the push thread.\n"
        "# TYPE parley_push_hints_unsubscribed_total counter\nparley_push_hints_unsubscribed_total %lu\n"
        "# HELP parley_push_hints_handled_total Hints the push thread handled: one per (user, conversation) per fan-out commit.\n"
        "# TYPE parley_push_hints_handled_total counter\nparley_push_hints_handled_total %lu\n"
        "# HELP parley_push_subscribers Push subscriptions (user, device) the fan-out checks hints against.\n"
        "# TYPE parley_push_subscribers gauge\nparley_push_subscribers %zu\n"
        "# HELP parley_push_skipped_online_total Notifications not sent (or retried) because the device came online.\n"
        "# TYPE parley_push_skipped_online_total counter\nparley_push_skipped_online_total %lu\n"
        "# HELP parley_push_in_flight Push requests in flight.\n"
        "# TYPE parley_push_in_flight gauge\nparley_push_in_flight %ld\n",
        atomic_load(&sent_total), atomic_load(&failed_total), atomic_load(&coalesced_total),
        atomic_load(&gone_total), atomic_load(&retried_total), atomic_load(&rate_limited_total),
        atomic_load(&hints_total), atomic_load(&hints_dropped_total), atomic_load(&hints_unsubscribed_total),
        atomic_load(&hints_handled_total),
        push_subscribers_count(g_subs_for_metrics), atomic_load(&skipped_online_total), atomic_load(&in_flight_now));
    if (n < 0) return 0;
    return (size_t)n < cap ? (size_t)n : 0;
}
