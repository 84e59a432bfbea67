/* conn_auth.h -- the sign-in state of one connection, held only between
 * the upgrade and the sign-in.
 *
 * A signed-in connection has no use for the challenge nonce, the Host it
 * must be signed with, the pending auth request or the sign-in deadline, so
 * they live in one side allocation (c->auth) made at the upgrade and freed
 * at sign-in or close: an idle signed-in connection does not carry them. */
#ifndef PARLEY_GATEWAY_CONN_AUTH_H
#define PARLEY_GATEWAY_CONN_AUTH_H

#include <stddef.h>
#include <stdint.h>

typedef struct conn_auth {
    uint64_t since_ms;      /* upgraded (monotonic): the sign-in deadline counts from here */
    uint64_t request_id;    /* the RegisterUser/RegisterDevice waiting for the writer */
    uint8_t nonce[32];      /* the sign-in challenge */
    char host[];            /* Host of the upgrade request, signed with the nonce */
} conn_auth;

/* host is at most max_host bytes (the HTTP parser bounds it); longer is
 * refused (NULL), as is running out of memory. */
conn_auth *conn_auth_new(const char *host, size_t max_host, uint64_t since_ms);
void conn_auth_free(conn_auth *a);

#endif
