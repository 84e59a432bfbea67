#include "gateway/conn_auth.h"

#include <stdlib.h>
#include <string.h>

conn_auth *conn_auth_new(const char *host, size_t max_host, uint64_t since_ms) {
    size_t len = strnlen(host, max_host + 1);
    if (len > max_host) return NULL;
    conn_auth *a = calloc(1, sizeof *a + len + 1);
    if (!a) return NULL;
    a->since_ms = since_ms;
    memcpy(a->host, host, len);
    a->host[len] = '\0';
    return a;
}

void conn_auth_free(conn_auth *a) { free(a); }
