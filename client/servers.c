/* servers.c -- a client given several servers ("URL1,URL2,..."): the first
 * connect picks one at random, so a fleet of clients spreads over the
 * gateways; every attempt after a failure or a lost connection goes to
 * another one, picked at random among those not tried since the last
 * success, so the clients of a gateway that died spread over the survivors
 * (instead of all trying the dead one again, or all moving to the same next
 * one) and a live server is found within count - 1 failed attempts. The
 * backoff before each attempt is reconnect.c's, unchanged. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "internal.h"

static uint32_t uniform(pc_client *c, uint32_t bound) {
    uint32_t r = c->jitter_uniform ? c->jitter_uniform(c->jitter_ud, bound) : randombytes_uniform(bound);
    return r < bound ? r : bound - 1;   /* an injected source is a test's: keep it in range */
}

/* Parses URL number i of the list into host/port/path. */
static int use_server(pc_client *c, int i) {
    const char *p = c->server_list;
    for (int k = 0; k < i; k++) p = strchr(p, ',') + 1;
    size_t len = strcspn(p, ",");
    char url[PC_SERVER_LIST_MAX + 1];
    memcpy(url, p, len);
    url[len] = '\0';
    c->server_index = i;
    return pc_parse_url(c, url);
}

int pc_servers_init(pc_client *c, const char *server_url) {
    c->server_count = 1;
    c->server_index = 0;
    if (!strchr(server_url, ',')) return pc_parse_url(c, server_url);
    size_t len = strnlen(server_url, PC_SERVER_LIST_MAX + 1);
    if (len > PC_SERVER_LIST_MAX) return pc_fail(c, -1, "server list longer than %d bytes", PC_SERVER_LIST_MAX);
    int n = 1;
    for (const char *p = server_url; (p = strchr(p, ',')); p++) n++;
    if (n > PC_MAX_SERVERS) return pc_fail(c, -1, "%d servers in the list; at most %d", n, PC_MAX_SERVERS);
    c->server_list = strdup(server_url);
    if (!c->server_list) return pc_fail(c, -1, "out of memory");
    c->server_count = n;
    /* every URL now, so a typo in the third is not found at the first failover */
    for (int i = n - 1; i >= 0; i--) {
        const char *p = c->server_list;
        for (int k = 0; k < i; k++) p = strchr(p, ',') + 1;
        if (strcspn(p, ",") == 0) return pc_fail(c, -1, "empty URL in the server list: %s", server_url);
        if (use_server(c, i) < 0) return -1;
    }
    return 0;
}

void pc_servers_pick_first(pc_client *c) {
    c->server_picked = true;
    if (c->server_count > 1) use_server(c, (int)uniform(c, (uint32_t)c->server_count));
}

void pc_servers_next(pc_client *c) {
    c->server_picked = true;
    if (c->server_count < 2) return;
    /* among the servers not tried since the last success, so one live
     * server among dead ones is reached within count - 1 failures; once
     * every one was tried, a new round over all but the one that just
     * failed */
    uint32_t all = (1u << c->server_count) - 1;
    c->servers_tried |= 1u << c->server_index;
    if ((c->servers_tried & all) == all) c->servers_tried = 1u << c->server_index;
    uint32_t left = all & ~c->servers_tried;
    uint32_t r = uniform(c, (uint32_t)__builtin_popcount(left));
    for (int i = 0; i < c->server_count; i++) {
        if (!(left & (1u << i))) continue;
        if (r-- == 0) {
            use_server(c, i);
            return;
        }
    }
}

void pc_servers_connected(pc_client *c) { c->servers_tried = 0; }

void pc_servers_free(pc_client *c) {
    free(c->server_list);
    c->server_list = NULL;
}
