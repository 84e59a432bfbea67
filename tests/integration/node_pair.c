/* node_pair.c -- see node_pair.h. */
#include "node_pair.h"

#include <stdio.h>

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
