/* link_auth.h -- the node link's mutual challenge-response (link.h).
 *
 * Every node holds the same secret (--cluster-secret FILE). When a
 * connection opens, each side sends a HELLO carrying a fresh random nonce;
 * each then sends a PROOF: HMAC-SHA256 keyed by the secret over a
 * direction label, the connector's nonce, the acceptor's nonce, the
 * connector's name and the acceptor's name. Both nonces make a proof good
 * for one connection only (a recorded proof replayed on another connection
 * meets another nonce); the label makes the acceptor's proof useless as the
 * connector's (it cannot be reflected back); the names bind who speaks. A
 * node without a secret uses an all-zero key: it links only with others
 * that have none (allowed on loopback only, cluster_config.c). */
#ifndef PARLEY_CLUSTER_LINK_AUTH_H
#define PARLEY_CLUSTER_LINK_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    LINK_AUTH_BYTES = 32,          /* nonce, key and proof lengths */
    LINK_SECRET_MIN = 32,          /* bytes in a --cluster-secret file */
    LINK_SECRET_MAX = 4096,
};

enum link_auth_side { LINK_AUTH_CONNECTOR, LINK_AUTH_ACCEPTOR };

/* The HMAC key from a secret's bytes (SHA-256 of them). */
void link_auth_key(const uint8_t *secret, size_t len, uint8_t key[LINK_AUTH_BYTES]);
void link_auth_nonce(uint8_t nonce[LINK_AUTH_BYTES]);
/* The proof that side knows key, for the connection with these nonces and
 * names (NUL-terminated node names). */
void link_auth_proof(const uint8_t key[LINK_AUTH_BYTES], enum link_auth_side side,
                     const uint8_t nonce_connector[LINK_AUTH_BYTES], const uint8_t nonce_acceptor[LINK_AUTH_BYTES],
                     const char *name_connector, const char *name_acceptor, uint8_t out[LINK_AUTH_BYTES]);
/* Whether proof is side's proof for that connection (constant time). */
bool link_auth_verify(const uint8_t key[LINK_AUTH_BYTES], enum link_auth_side side,
                      const uint8_t nonce_connector[LINK_AUTH_BYTES], const uint8_t nonce_acceptor[LINK_AUTH_BYTES],
                      const char *name_connector, const char *name_acceptor, const uint8_t proof[LINK_AUTH_BYTES]);
/* Reads a secret file: a regular file of LINK_SECRET_MIN..MAX bytes, not
 * readable or writable by group or others (a shared secret others can read
 * authenticates nobody). Fills key; 0, or -1 with the reason in err. */
int link_auth_load(const char *path, uint8_t key[LINK_AUTH_BYTES], char *err, size_t errlen);

#endif
