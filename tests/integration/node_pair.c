/* node_pair.c -- see node_pair.h. */
#include "node_pair.h"

#include <stdio.h>
#include <stdlib.h>

#include "cassandra_node.h"
#include "redis_cluster_node.h"

enum { EXTRA_MAX = 8 };

int node_start(h_server *s, const char *name, int gateway, const node_opts *o) {
    char internal[64];
    snprintf(internal, sizeof internal, "127.0.0.1:%d", h_free_port());
    const char *args[32] = {"--store", "cassandra", "--cassandra", cassandra_node_hosts(), "--keyspace", o->keyspace,
                            "--node", name, "--internal-listen", internal, "--redis", redis_cluster_seeds(),
                            "--node-ttl-ms", o->node_ttl_ms ? o->node_ttl_ms : "3000",
                            "--session-ttl-ms", o->session_ttl_ms ? o->session_ttl_ms : "6000"};
    size_t n = 16;
    if (o->kafka) {
        args[n++] = "--kafka";
        args[n++] = o->kafka;
    }
    if (gateway) {
        args[n++] = "--roles";
        args[n++] = "gateway";
    }
    for (size_t i = 0; o->extra && o->extra[i]; i++) {
        if (i == EXTRA_MAX) return -1;
        args[n++] = o->extra[i];
    }
    args[n] = NULL;
    return h_server_start(s, args);
}

int node_chat_linked(const h_server *s, int wait_ms) {
    double up = 0;
    for (int i = 0; i < wait_ms / 100; i++) {
        if (h_metric(s, "parley_cluster_chat_link_up", &up) == 0 && up == 1) return 1;
        h_sleep_ms(100);
    }
    return 0;
}

double node_metric_or_zero(const h_server *s, const char *name) {
    double v = 0;
    if (s->pid == 0 || h_metric(s, name, &v)) return 0;
    return v;
}

int node_fanout_idle(const h_server *s, int wait_ms) {
    for (int i = 0; i < wait_ms / 200; i++) {
        double pending = -1;
        if (h_metric(s, "parley_fanout_pending_deliveries", &pending) == 0 && pending == 0) return 1;
        h_sleep_ms(200);
    }
    return 0;
}

int node_ring_start(h_dev **users, int n, h_server *const *where, const char *prefix, const char *group,
                    uint64_t *convs, int wait_ms) {
    if (n < 3) return -1;
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "%s%d", prefix, i);
        if (!(users[i] = h_user_new(where[i], name)) || h_dev_sync(users[i], wait_ms) != 0) {
            fprintf(stderr, "  sign-up or sync of %s failed\n", name);
            return -1;
        }
    }
    for (int k = 0; k < n; k++) {
        if (pc_open_direct(users[k]->c, users[(k + 1) % n]->id.user_id, &convs[k]) != 0 ||
            h_accept(users[(k + 1) % n], convs[k]) != 0) {
            fprintf(stderr, "  direct conversation %s%d -> %s%d failed: %s / %s\n", prefix, k, prefix, (k + 1) % n,
                    pc_error(users[k]->c), pc_error(users[(k + 1) % n]->c));
            return -1;
        }
    }
    uint64_t *others = calloc((size_t)n, sizeof *others);
    if (!others) return -1;
    for (int i = 1; i < n; i++) others[i - 1] = users[i]->id.user_id;
    int rc = pc_create_group(users[0]->c, group, others, (size_t)n - 1, &convs[n]);
    free(others);
    for (int i = 1; rc == 0 && i < n; i++) rc = h_accept(users[i], convs[n]);
    if (rc) fprintf(stderr, "  group %s failed: %s\n", group, pc_error(users[0]->c));
    return rc ? -1 : 0;
}

int node_record_unique(const h_dev *d, int user_seqs, char *why, size_t cap) {
    for (size_t i = 0; i < d->n_ev; i++) {
        for (size_t j = 0; j < i; j++) {
            const h_event *a = &d->ev[j], *e = &d->ev[i];
            if (user_seqs && e->user_seq && a->user_seq == e->user_seq) {
                snprintf(why, cap, "%s: user_seq %llu twice (conv %llu seq %llu and conv %llu seq %llu)", d->name,
                         (unsigned long long)e->user_seq, (unsigned long long)a->conversation_id,
                         (unsigned long long)a->seq, (unsigned long long)e->conversation_id,
                         (unsigned long long)e->seq);
                return -1;
            }
            if (a->conversation_id == e->conversation_id && a->seq == e->seq) {
                snprintf(why, cap, "%s: conv %llu seq %llu twice (user_seq %llu and %llu)", d->name,
                         (unsigned long long)e->conversation_id, (unsigned long long)e->seq,
                         (unsigned long long)a->user_seq, (unsigned long long)e->user_seq);
                return -1;
            }
        }
    }
    return 0;
}
