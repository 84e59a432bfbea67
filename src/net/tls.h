/* tls.h -- TLS on non-blocking sockets (OpenSSL), shared by the server's
 * workers and libparley.
 *
 * Contexts are made here with parley's choices (TLS 1.2+; a server offers
 * TLS 1.2 only with ECDHE and AEAD ciphers, in its own order, without
 * renegotiation; buffers released when idle); reads and writes go through tls_read/tls_write, which fold
 * OpenSSL's error queue into one small result the event loops can act on:
 * WANT_READ / WANT_WRITE say which socket readiness the call waits for
 * (either can happen on a read or a write: handshakes and key updates). */
#ifndef PARLEY_NET_TLS_H
#define PARLEY_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

typedef enum tls_result {
    TLS_OK = 0,          /* *n bytes moved (> 0) */
    TLS_WANT_READ = 1,   /* retry once the socket is readable */
    TLS_WANT_WRITE = 2,  /* retry once the socket is writable */
    TLS_CLOSED = 3,      /* the peer sent close_notify (or EOF): no more data */
    TLS_ERROR = -1,      /* fatal: drop the connection without SSL_shutdown */
} tls_result;

/* A server context from PEM files (the certificate file may hold the chain).
 * NULL with a one-line reason in err (err_cap bytes) on failure. */
SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, char *err,
                            size_t err_cap);
/* Loads the certificate and key again from the same files, for connections
 * accepted from now on; open connections keep the certificate they were
 * made with. 0, or -1 with the reason in err (the old certificate stays). */
int tls_server_ctx_reload(SSL_CTX *ctx, char *err, size_t err_cap);
/* tls_server_ctx_reload on every server context of the process (SIGHUP).
 * Returns how many failed (the last reason in err). */
int tls_server_reload_all(char *err, size_t err_cap);
/* A client context that verifies the server against ca_file (PEM), or
 * against the system's trust store when ca_file is NULL or "". NULL with the
 * reason in err on failure. */
SSL_CTX *tls_client_ctx_new(const char *ca_file, char *err, size_t err_cap);
void tls_ctx_free(SSL_CTX *ctx);

/* A server-side SSL on fd (handshake happens inside the first reads). */
SSL *tls_server_new(SSL_CTX *ctx, int fd);
/* A client-side SSL on fd that sends SNI for host (unless it is an IP
 * address) and checks the certificate names host (DNS name or IP). */
SSL *tls_client_new(SSL_CTX *ctx, int fd, const char *host);
/* Frees ssl; sends close_notify first (best effort, never blocks) unless
 * the connection failed. */
void tls_free(SSL *ssl, bool send_close_notify);

/* Client handshake step: TLS_OK when done, WANT_* to wait, ERROR (reason in
 * err). */
tls_result tls_connect_step(SSL *ssl, char *err, size_t err_cap);
tls_result tls_read(SSL *ssl, void *buf, size_t len, size_t *n);
tls_result tls_write(SSL *ssl, const void *buf, size_t len, size_t *n);
/* Has the handshake completed? */
bool tls_handshake_done(const SSL *ssl);
/* Decrypted bytes buffered inside ssl, readable without the socket. */
bool tls_pending(const SSL *ssl);

#endif
