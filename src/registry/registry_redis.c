/* registry_redis.c -- see registry_redis.h. Each call is one script run
 * (one command, one round trip) on the master of the user's slot (or the
 * node name's directory shard); an `op` carries its arguments so it can be
 * resent as EVAL after NOSCRIPT. A directory listing is one op per shard,
 * gathered by a node_listing into one callback. */
#include "registry/registry_redis.h"
#include "registry/registry_redis_scripts.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum script_id { S_CONNECT, S_DISCONNECT, S_REFRESH, S_LOOKUP, S_PRESENCE, S_NODE_REGISTER, S_NODE_GET, S_NODE_LIST, S_COUNT };

static const char *const script_text[S_COUNT] = {
    [S_CONNECT] = RR_LUA_CONNECT,
    [S_DISCONNECT] = RR_LUA_DISCONNECT,
    [S_REFRESH] = RR_LUA_REFRESH,
    [S_LOOKUP] = RR_LUA_LOOKUP,
    [S_PRESENCE] = RR_LUA_PRESENCE,
    [S_NODE_REGISTER] = RR_LUA_NODE_REGISTER,
    [S_NODE_GET] = RR_LUA_NODE_GET,
    [S_NODE_LIST] = RR_LUA_NODE_LIST,
};

#define MAX_ARGS 12
/* An op's argument space, sized by what it formats (an op lives until its
 * answer, and a heartbeat has a batch of them in flight): a session
 * script's "1", key, device, since, conn id, node, TTL and last-seen TTL;
 * a node script's "1", key, name, address and TTL. */
#define SESSION_ARG_SPACE (2 + 26 + 11 + 21 + 21 + RR_NODE_MAX + 11 + 21)
#define NODE_ARG_SPACE (2 + RR_NODE_SHARD_KEY_MAX + 1 + RR_NODE_MAX + RR_ADDR_MAX + 11)

struct registry_redis {
    rc_client *rc;
    rr_options o;
    char sha[S_COUNT][41];
    _Atomic uint64_t script_loads;
};

enum op_kind { OP_DONE, OP_BATCH, OP_LOOKUP, OP_PRESENCE, OP_NODE, OP_NODES, OP_PLAIN_DONE };

typedef struct hb_batch {
    atomic_size_t remaining, refreshed, gone, failed;
    rr_batch_fn cb;
    rr_each_fn each;   /* NULL, or told of every entry's answer */
    void *ud;
} hb_batch;

/* A directory listing in flight: the shards' answers gathered (on the I/O
 * thread; the submitting thread too when a shard's command is refused),
 * handed to cb by whoever releases it last. Owned by the listing itself
 * (freed then). */
typedef struct node_listing {
    pthread_mutex_t mu;
    size_t remaining;   /* shards unanswered, +1 while they are submitted */
    unsigned missing;   /* bit i: shard i failed */
    rr_node *nodes;     /* up to RR_MAX_NODES, grown as answers come */
    size_t n, cap;
    size_t total;       /* live nodes reported, those past RR_MAX_NODES too */
    char error[128];    /* the last shard's failure */
    rr_nodes_fn cb;
    void *ud;
} node_listing;

typedef struct op {
    registry_redis *r;
    enum script_id script;
    enum op_kind kind;
    union {
        rr_done_fn done;
        rr_lookup_fn lookup;
        rr_presence_fn presence;
        rr_node_fn node;
    } cb;
    void *ud;
    hb_batch *batch;
    node_listing *listing; /* OP_NODES */
    size_t index;      /* OP_BATCH: the entry's place in its batch; OP_NODES: the shard */
    int argc;
    const char *argv[MAX_ARGS];
    size_t argvlen[MAX_ARGS];
    char key[48]; /* the key whose slot the command goes to */
    size_t keylen;
    size_t used, cap;
    char space[]; /* cap bytes */
} op;

static void sha1_hex(const char *text, char out[41]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(text, strlen(text), md, &len, EVP_sha1(), NULL);
    for (unsigned i = 0; i < len && i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[40] = '\0';
}

registry_redis *registry_redis_new(rc_client *rc, const rr_options *o) {
    registry_redis *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->rc = rc;
    if (o)
        r->o = *o;
    if (!r->o.session_ttl_ms) r->o.session_ttl_ms = 45000;
    if (!r->o.last_seen_ttl_s) r->o.last_seen_ttl_s = 30u * 24 * 3600;
    if (!r->o.node_ttl_ms) r->o.node_ttl_ms = 30000;
    for (int i = 0; i < S_COUNT; i++)
        sha1_hex(script_text[i], r->sha[i]);
    return r;
}

void registry_redis_free(registry_redis *r) { free(r); }

uint64_t registry_redis_script_loads(registry_redis *r) { return atomic_load(&r->script_loads); }

/* a name or address fit for a space-separated entry: printable, no spaces */
static int token_ok(const char *s, size_t max) {
    size_t n = s ? strnlen(s, max) : max;
    if (n == 0 || n >= max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 127)
            return 0;
    return 1;
}

static op *op_new(registry_redis *r, enum script_id script, enum op_kind kind, void *ud, size_t space) {
    op *o = calloc(1, sizeof *o + space);
    if (!o)
        return NULL;
    o->cap = space;
    o->r = r;
    o->script = script;
    o->kind = kind;
    o->ud = ud;
    o->argv[0] = "EVALSHA";
    o->argvlen[0] = 7;
    o->argv[1] = r->sha[script];
    o->argvlen[1] = 40;
    o->argc = 2;
    return o;
}

/* appends one formatted argument; -1 when it does not fit (a bug: the
 * inputs are length-checked before) */
__attribute__((format(printf, 2, 3))) static int op_arg(op *o, const char *fmt, ...) {
    if (o->argc == MAX_ARGS)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->space + o->used, o->cap - o->used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->used)
        return -1;
    o->argv[o->argc] = o->space + o->used;
    o->argvlen[o->argc] = (size_t)n;
    o->argc++;
    o->used += (size_t)n + 1;
    return 0;
}

static void on_reply(void *ud, redisReply *reply, const char *error);

static int op_send(op *o) {
    return rc_command(o->r->rc, o->key, o->keylen, o->argc, o->argv, o->argvlen, on_reply, o);
}

static void batch_release(hb_batch *b) {
    if (atomic_fetch_sub(&b->remaining, 1) == 1) {
        if (b->cb)
            b->cb(b->ud, atomic_load(&b->refreshed), atomic_load(&b->gone), atomic_load(&b->failed));
        free(b);
    }
}

static void parse_devices(const redisReply *rep, rr_device *devs, size_t *count) {
    size_t n = 0;
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const redisReply *f = rep->element[i], *v = rep->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || f->len > 10 || v->len > 200)
            continue;
        if (n < RR_MAX_DEVICES) {
            rr_device *d = &devs[n];
            unsigned long long since, exp, conn;
            char entry[256];
            memcpy(entry, v->str, v->len);
            entry[v->len] = '\0';
            if (sscanf(entry, "%llu %llu %llu %63s", &since, &exp, &conn, d->node) != 4)
                continue;
            d->device = (uint32_t)strtoul(f->str, NULL, 10);
            d->since_ms = since;
            d->expires_ms = exp;
            d->conn_id = conn;
        }
        n++;
    }
    *count = n;
}

static void listing_release(node_listing *l) {
    pthread_mutex_lock(&l->mu);
    int last = --l->remaining == 0;
    pthread_mutex_unlock(&l->mu);
    if (!last)
        return;
    if (l->missing == RR_ALL_SHARDS)
        l->cb(l->ud, NULL, 0, l->missing, l->error[0] ? l->error : "no shard answered");
    else
        l->cb(l->ud, l->nodes, l->total, l->missing, NULL);
    pthread_mutex_destroy(&l->mu);
    free(l->nodes);
    free(l);
}

static void listing_failed(node_listing *l, unsigned shard, const char *why) {
    l->missing |= 1u << shard;
    snprintf(l->error, sizeof l->error, "%s", why);
}

/* Shard shard's answer (rep NULL: it failed, why says how) into l. */
static void listing_add(node_listing *l, unsigned shard, const redisReply *rep, const char *why) {
    pthread_mutex_lock(&l->mu);
    if (!rep) {
        listing_failed(l, shard, why);
        pthread_mutex_unlock(&l->mu);
        return;
    }
    size_t want = l->n + rep->elements / 2;
    if (want > RR_MAX_NODES)
        want = RR_MAX_NODES;
    if (want > l->cap) {
        size_t cap = l->cap ? l->cap : 64;
        while (cap < want)
            cap *= 2;
        if (cap > RR_MAX_NODES)
            cap = RR_MAX_NODES;
        rr_node *grown = realloc(l->nodes, cap * sizeof *grown);
        if (!grown) { /* its nodes unseen: the caller keeps what it knew of them */
            listing_failed(l, shard, "out of memory");
            pthread_mutex_unlock(&l->mu);
            return;
        }
        l->nodes = grown;
        l->cap = cap;
    }
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const redisReply *f = rep->element[i], *v = rep->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || f->len >= RR_NODE_MAX ||
            v->len >= RR_ADDR_MAX)
            continue;
        l->total++;
        if (l->n == l->cap)
            continue;
        rr_node *d = &l->nodes[l->n++];
        memcpy(d->name, f->str, f->len);
        d->name[f->len] = '\0';
        memcpy(d->addr, v->str, v->len);
        d->addr[v->len] = '\0';
    }
    pthread_mutex_unlock(&l->mu);
}

static void deliver(op *o, redisReply *rep, const char *error) {
    int is_err = error || !rep || rep->type == REDIS_REPLY_ERROR;
    const char *why = error ? error : (rep && rep->type == REDIS_REPLY_ERROR) ? rep->str : "no reply";
    switch (o->kind) {
    case OP_DONE:
    case OP_PLAIN_DONE:
        if (o->cb.done) {
            if (is_err)
                o->cb.done(o->ud, -1, why);
            else if (rep->type == REDIS_REPLY_INTEGER)
                o->cb.done(o->ud, (int)rep->integer, NULL);
            else
                o->cb.done(o->ud, -1, "unexpected reply");
        }
        break;
    case OP_BATCH: {
        int result = is_err || rep->type != REDIS_REPLY_INTEGER ? -1 : rep->integer == 1 ? 1 : 0;
        if (result < 0)
            atomic_fetch_add(&o->batch->failed, 1);
        else if (result == 1)
            atomic_fetch_add(&o->batch->refreshed, 1);
        else
            atomic_fetch_add(&o->batch->gone, 1);
        if (o->batch->each)
            o->batch->each(o->batch->ud, o->index, result);
        batch_release(o->batch);
        break;
    }
    case OP_LOOKUP: {
        rr_device devs[RR_MAX_DEVICES];
        size_t n = 0;
        if (!is_err && rep->type != REDIS_REPLY_ARRAY) {
            is_err = 1;
            why = "unexpected reply";
        }
        if (!is_err)
            parse_devices(rep, devs, &n);
        o->cb.lookup(o->ud, devs, n, is_err ? why : NULL);
        break;
    }
    case OP_PRESENCE:
        if (!is_err && (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
                        rep->element[0]->type != REDIS_REPLY_INTEGER || rep->element[1]->type != REDIS_REPLY_INTEGER)) {
            is_err = 1;
            why = "unexpected reply";
        }
        if (is_err)
            o->cb.presence(o->ud, 0, 0, why);
        else
            o->cb.presence(o->ud, (int)rep->element[0]->integer, (uint64_t)rep->element[1]->integer, NULL);
        break;
    case OP_NODE: {
        char addr[RR_ADDR_MAX];
        if (is_err)
            o->cb.node(o->ud, NULL, why);
        else if (rep->type == REDIS_REPLY_STRING && rep->len < sizeof addr) {
            memcpy(addr, rep->str, rep->len);
            addr[rep->len] = '\0';
            o->cb.node(o->ud, addr, NULL);
        } else
            o->cb.node(o->ud, NULL, rep->type == REDIS_REPLY_NIL ? NULL : "unexpected reply");
        break;
    }
    case OP_NODES:
        if (!is_err && rep->type != REDIS_REPLY_ARRAY) {
            is_err = 1;
            why = "unexpected reply";
        }
        listing_add(o->listing, (unsigned)o->index, is_err ? NULL : rep, why);
        listing_release(o->listing);
        break;
    }
}

static void on_reply(void *ud, redisReply *reply, const char *error) {
    op *o = ud;
    /* the node has not seen the script yet (new or restarted): send its text */
    if (!error && reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0 &&
        strcmp(o->argv[0], "EVALSHA") == 0) {
        freeReplyObject(reply);
        atomic_fetch_add(&o->r->script_loads, 1);
        o->argv[0] = "EVAL";
        o->argvlen[0] = 4;
        o->argv[1] = script_text[o->script];
        o->argvlen[1] = strlen(script_text[o->script]);
        if (op_send(o) == 0)
            return;
        deliver(o, NULL, "rejected");
        free(o);
        return;
    }
    deliver(o, reply, error);
    if (reply)
        freeReplyObject(reply);
    free(o);
}

static void user_key(op *o, uint64_t user) {
    o->keylen = (size_t)snprintf(o->key, sizeof o->key, "{u:%llu}", (unsigned long long)user);
    op_arg(o, "1");
    op_arg(o, "{u:%llu}", (unsigned long long)user);
}

static uint64_t last_seen_ttl_ms(const registry_redis *r) { return (uint64_t)r->o.last_seen_ttl_s * 1000; }

/* builds the op of one session script; NULL on a bad node name or no memory */
static op *session_op(registry_redis *r, enum script_id script, enum op_kind kind, const rr_session *s, void *ud) {
    if (!token_ok(s->node, RR_NODE_MAX))
        return NULL;
    op *o = op_new(r, script, kind, ud, SESSION_ARG_SPACE);
    if (!o)
        return NULL;
    user_key(o, s->user);
    int bad = op_arg(o, "%u", s->device);
    if (script == S_CONNECT)
        bad |= op_arg(o, "%llu", (unsigned long long)s->since_ms);
    bad |= op_arg(o, "%llu", (unsigned long long)s->conn_id);
    bad |= op_arg(o, "%s", s->node);
    if (script != S_DISCONNECT)
        bad |= op_arg(o, "%u", r->o.session_ttl_ms);
    bad |= op_arg(o, "%llu", (unsigned long long)last_seen_ttl_ms(r));
    if (bad) {
        free(o);
        return NULL;
    }
    return o;
}

static int submit(op *o) {
    if (!o)
        return -1;
    if (op_send(o) != 0) {
        free(o);
        return -1;
    }
    return 0;
}

int registry_redis_connect(registry_redis *r, const rr_session *s, rr_done_fn cb, void *ud) {
    op *o = session_op(r, S_CONNECT, OP_DONE, s, ud);
    if (o)
        o->cb.done = cb;
    return submit(o);
}

int registry_redis_disconnect(registry_redis *r, const rr_session *s, rr_done_fn cb, void *ud) {
    op *o = session_op(r, S_DISCONNECT, OP_DONE, s, ud);
    if (o)
        o->cb.done = cb;
    return submit(o);
}

int registry_redis_heartbeat(registry_redis *r, const rr_session *s, size_t n, rr_batch_fn cb, void *ud) {
    return registry_redis_heartbeat_each(r, s, n, NULL, cb, ud);
}

int registry_redis_heartbeat_each(registry_redis *r, const rr_session *s, size_t n, rr_each_fn each, rr_batch_fn cb,
                                  void *ud) {
    if (n == 0)
        return -1;
    hb_batch *b = calloc(1, sizeof *b);
    if (!b)
        return -1;
    atomic_init(&b->remaining, n + 1); /* +1: ours, until every op is submitted */
    b->cb = cb;
    b->each = each;
    b->ud = ud;
    for (size_t i = 0; i < n; i++) {
        op *o = session_op(r, S_REFRESH, OP_BATCH, &s[i], NULL);
        if (o) {
            o->batch = b;
            o->index = i;
        }
        if (submit(o) != 0) {
            atomic_fetch_add(&b->failed, 1);
            atomic_fetch_sub(&b->remaining, 1);
        }
    }
    batch_release(b);
    return 0;
}

int registry_redis_lookup(registry_redis *r, uint64_t user, rr_lookup_fn cb, void *ud) {
    op *o = op_new(r, S_LOOKUP, OP_LOOKUP, ud, SESSION_ARG_SPACE);
    if (!o)
        return -1;
    o->cb.lookup = cb;
    user_key(o, user);
    if (op_arg(o, "%u", r->o.session_ttl_ms)) {
        free(o);
        return -1;
    }
    return submit(o);
}

int registry_redis_presence(registry_redis *r, uint64_t user, rr_presence_fn cb, void *ud) {
    op *o = op_new(r, S_PRESENCE, OP_PRESENCE, ud, SESSION_ARG_SPACE);
    if (!o)
        return -1;
    o->cb.presence = cb;
    user_key(o, user);
    if (op_arg(o, "%u", r->o.session_ttl_ms)) {
        free(o);
        return -1;
    }
    return submit(o);
}

/* o goes to the directory shard's slot; the shard's key */
static const char *to_shard(op *o, unsigned shard) {
    const char *key = rr_node_shard_key(shard);
    o->keylen = strlen(key);
    memcpy(o->key, key, o->keylen);
    return key;
}

/* a script on shard's key: its first arguments "1" and the key */
static op *node_op(registry_redis *r, enum script_id script, enum op_kind kind, void *ud, unsigned shard) {
    op *o = op_new(r, script, kind, ud, NODE_ARG_SPACE);
    if (!o)
        return NULL;
    const char *key = to_shard(o, shard);
    op_arg(o, "1");
    op_arg(o, "%s", key);
    return o;
}

int registry_redis_node_register(registry_redis *r, const char *name, const char *addr, rr_done_fn cb, void *ud) {
    if (!token_ok(name, RR_NODE_MAX) || !token_ok(addr, RR_ADDR_MAX))
        return -1;
    op *o = node_op(r, S_NODE_REGISTER, OP_DONE, ud, rr_node_shard(name));
    if (!o)
        return -1;
    o->cb.done = cb;
    if (op_arg(o, "%s", name) || op_arg(o, "%s", addr) || op_arg(o, "%u", r->o.node_ttl_ms)) {
        free(o);
        return -1;
    }
    return submit(o);
}

int registry_redis_node_unregister(registry_redis *r, const char *name, rr_done_fn cb, void *ud) {
    if (!token_ok(name, RR_NODE_MAX))
        return -1;
    /* a plain HDEL: nothing to compare */
    op *o = calloc(1, sizeof *o + NODE_ARG_SPACE);
    if (!o)
        return -1;
    o->cap = NODE_ARG_SPACE;
    o->r = r;
    o->kind = OP_PLAIN_DONE;
    o->cb.done = cb;
    o->ud = ud;
    const char *key = to_shard(o, rr_node_shard(name));
    if (op_arg(o, "HDEL") || op_arg(o, "%s", key) || op_arg(o, "%s", name)) {
        free(o);
        return -1;
    }
    return submit(o);
}

int registry_redis_node_lookup(registry_redis *r, const char *name, rr_node_fn cb, void *ud) {
    if (!token_ok(name, RR_NODE_MAX))
        return -1;
    op *o = node_op(r, S_NODE_GET, OP_NODE, ud, rr_node_shard(name));
    if (!o)
        return -1;
    o->cb.node = cb;
    if (op_arg(o, "%s", name)) {
        free(o);
        return -1;
    }
    return submit(o);
}

/* The LIST script on every shard at once (pipelined: eight commands spread
 * over the masters): a silent master costs its shards, not the listing. A
 * shard whose command is refused counts as missing; -1 when all were. */
int registry_redis_nodes(registry_redis *r, rr_nodes_fn cb, void *ud) {
    node_listing *l = calloc(1, sizeof *l);
    if (!l)
        return -1;
    pthread_mutex_init(&l->mu, NULL);
    l->remaining = RR_NODE_SHARDS + 1; /* +1: ours, until every shard is submitted */
    l->cb = cb;
    l->ud = ud;
    unsigned refused = 0;
    for (unsigned i = 0; i < RR_NODE_SHARDS; i++) {
        op *o = node_op(r, S_NODE_LIST, OP_NODES, NULL, i);
        if (o) {
            o->listing = l;
            o->index = i;
        }
        if (submit(o) != 0) {
            pthread_mutex_lock(&l->mu);
            listing_failed(l, i, "rejected");
            l->remaining--;
            pthread_mutex_unlock(&l->mu);
            refused++;
        }
    }
    if (refused == RR_NODE_SHARDS) { /* nothing in flight: l is ours alone */
        pthread_mutex_destroy(&l->mu);
        free(l);
        return -1;
    }
    listing_release(l);
    return 0;
}
