/* fenced_store.c -- see fenced_store.h. */
#include "fenced_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char hosts[128];
static cql_client *admin;
static char keyspace[32];
static int keyspace_n;

const char *fenced_store_shared_hosts(void) {
    const char *env = getenv("PARLEY_TEST_CASSANDRA");
    return env && *env ? env : NULL;
}

int fenced_store_connect(const char *h) {
    snprintf(hosts, sizeof hosts, "%s", h);
    cql_options o = {.hosts = hosts};
    admin = cql_connect(&o);
    return admin && cql_wait_ready(admin, 60000) == 0 ? 0 : -1;
}

void fenced_store_disconnect(void) {
    if (admin) cql_close(admin);
    admin = NULL;
}

cql_client *fenced_store_admin(void) { return admin; }
const char *fenced_store_hosts(void) { return hosts; }
const char *fenced_store_keyspace(void) { return keyspace; }

store *fenced_store_open(bool fence) {
    char *err = NULL;
    store_options o = {.cassandra_hosts = hosts, .cassandra_keyspace = keyspace, .cassandra_fence = fence};
    store *s = store_open_kind(STORE_KIND_CASSANDRA, NULL, &o, &err);
    if (!s) fprintf(stderr, "  open keyspace %s: %s\n", keyspace, err ? err : "?");
    free(err);
    return s;
}

void fenced_store_pair_close(store **a, store **b) {
    if (*a) store_close(*a);
    if (*b) store_close(*b);
    *a = *b = NULL;
    if (!keyspace[0] || !admin) return;
    char q[96];
    snprintf(q, sizeof q, "DROP KEYSPACE IF EXISTS %s", keyspace);
    cql_result *r = cql_query_sync(admin, q, CQL_ONE);
    if (cql_result_status(r) != CQL_OK) fprintf(stderr, "  %s: %s\n", q, cql_result_message(r));
    cql_result_free(r);
}

int fenced_store_pair(const char *prefix, store **a, store **b) {
    fenced_store_pair_close(a, b);
    snprintf(keyspace, sizeof keyspace, "%s_%d_%d", prefix, (int)getpid(), ++keyspace_n);
    *a = fenced_store_open(true);
    *b = *a ? fenced_store_open(true) : NULL;
    return *a && *b ? 0 : -1;
}

int fenced_store_cql(const char *fmt, unsigned long long a, unsigned long long b) {
    char q[256];
    snprintf(q, sizeof q, fmt, keyspace, a, b);
    cql_result *r = cql_query_sync(admin, q, CQL_LOCAL_QUORUM);
    int ok = cql_result_status(r) == CQL_OK;
    if (!ok) fprintf(stderr, "  %s: %s\n", q, cql_result_message(r));
    cql_result_free(r);
    return ok ? 0 : -1;
}
