/* tls.c -- see tls.h. */
#include "net/tls.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* The last OpenSSL error as text, or fallback when the queue is empty. */
static void last_error(char *err, size_t cap, const char *what, const char *fallback) {
    if (!err || !cap) return;
    unsigned long e = ERR_get_error();
    char text[256];
    if (e) ERR_error_string_n(e, text, sizeof text);
    snprintf(err, cap, "%s: %s", what, e ? text : fallback);
    ERR_clear_error();
}

/* Memory per connection matters more than the few cycles it costs to
 * allocate a record buffer again: an idle connection holds none. Writes may
 * be partial and the caller's buffer may move between retries (it is a
 * growable buffer). */
static void set_modes(SSL_CTX *ctx) {
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

/* What a server offers. TLS 1.3's suites are all ephemeral and AEAD; for
 * TLS 1.2 only ECDHE key exchange (forward secrecy) with an AEAD cipher, so
 * no static-RSA exchange and no CBC-SHA1. The server's order wins (AES-GCM
 * first: hardware-accelerated here; ChaCha20 for clients without AES
 * instructions). No renegotiation, no compression. */
static const char SERVER_TLS12_CIPHERS[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

static SSL_CTX *server_ctx_load(const char *cert_file, const char *key_file, char *err,
                                size_t err_cap) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        last_error(err, err_cap, "TLS context", "out of memory");
        return NULL;
    }
    set_modes(ctx);
    if (SSL_CTX_set_cipher_list(ctx, SERVER_TLS12_CIPHERS) != 1) {
        last_error(err, err_cap, "TLS ciphers", "none of parley's TLS 1.2 ciphers is available");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_COMPRESSION);
    /* no session cache: reconnecting clients do a full handshake, which
     * costs CPU but keeps server memory flat under a reconnect storm */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        last_error(err, err_cap, cert_file, "cannot load the certificate");
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        last_error(err, err_cap, key_file, "cannot load the private key");
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        last_error(err, err_cap, key_file, "the key does not match the certificate");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Certificate reload. The context callers hold (the "base") never changes;
 * it carries, as ex_data, the context loaded last from the files, and new
 * connections are made from that one. An SSL holds a reference to the
 * context it was made from, so open connections keep their certificate and
 * the replaced context is freed with the last of them. */
typedef struct reloadable {
    char cert[1024], key[1024];
    pthread_mutex_t lock;
    SSL_CTX *current;            /* one reference, owned */
} reloadable;

enum { MAX_SERVER_CTX = 8 };
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;
static int ex_index = -1;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *registry[MAX_SERVER_CTX];   /* every live base, for tls_server_reload_all */

static void ex_index_make(void) { ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL); }

static reloadable *reloadable_of(const SSL_CTX *ctx) {
    pthread_once(&ex_once, ex_index_make);
    return ex_index < 0 ? NULL : SSL_CTX_get_ex_data(ctx, ex_index);
}

SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, char *err,
                            size_t err_cap) {
    pthread_once(&ex_once, ex_index_make);
    if (strlen(cert_file) >= sizeof ((reloadable *)0)->cert ||
        strlen(key_file) >= sizeof ((reloadable *)0)->key) {
        snprintf(err, err_cap, "certificate or key file name too long");
        return NULL;
    }
    SSL_CTX *ctx = server_ctx_load(cert_file, key_file, err, err_cap);
    if (!ctx) return NULL;
    reloadable *r = calloc(1, sizeof *r);
    if (!r || ex_index < 0 || SSL_CTX_set_ex_data(ctx, ex_index, r) != 1) {
        free(r);
        return ctx;   /* works, just without reload */
    }
    strcpy(r->cert, cert_file);
    strcpy(r->key, key_file);
    pthread_mutex_init(&r->lock, NULL);
    SSL_CTX_up_ref(ctx);
    r->current = ctx;
    pthread_mutex_lock(&registry_lock);
    for (int i = 0; i < MAX_SERVER_CTX; i++)
        if (!registry[i]) {
            registry[i] = ctx;
            break;
        }
    pthread_mutex_unlock(&registry_lock);
    return ctx;
}

int tls_server_ctx_reload(SSL_CTX *ctx, char *err, size_t err_cap) {
    reloadable *r = reloadable_of(ctx);
    if (!r) {
        snprintf(err, err_cap, "not a reloadable server context");
        return -1;
    }
    SSL_CTX *fresh = server_ctx_load(r->cert, r->key, err, err_cap);
    if (!fresh) return -1;   /* the certificate in use stays */
    pthread_mutex_lock(&r->lock);
    SSL_CTX *old = r->current;
    r->current = fresh;
    pthread_mutex_unlock(&r->lock);
    SSL_CTX_free(old);
    return 0;
}

int tls_server_reload_all(char *err, size_t err_cap) {
    int failed = 0;
    pthread_mutex_lock(&registry_lock);
    for (int i = 0; i < MAX_SERVER_CTX; i++)
        if (registry[i] && tls_server_ctx_reload(registry[i], err, err_cap) != 0) failed++;
    pthread_mutex_unlock(&registry_lock);
    return failed;
}

SSL_CTX *tls_client_ctx_new(const char *ca_file, char *err, size_t err_cap) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        last_error(err, err_cap, "TLS context", "out of memory");
        return NULL;
    }
    set_modes(ctx);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca_file && ca_file[0] ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                                   : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        last_error(err, err_cap, ca_file && ca_file[0] ? ca_file : "system trust store",
                   "cannot load CA certificates");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void tls_ctx_free(SSL_CTX *ctx) {
    if (!ctx) return;
    reloadable *r = reloadable_of(ctx);
    if (r) {
        pthread_mutex_lock(&registry_lock);
        for (int i = 0; i < MAX_SERVER_CTX; i++)
            if (registry[i] == ctx) registry[i] = NULL;
        pthread_mutex_unlock(&registry_lock);
        SSL_CTX_set_ex_data(ctx, ex_index, NULL);
        SSL_CTX_free(r->current);
        pthread_mutex_destroy(&r->lock);
        free(r);
    }
    SSL_CTX_free(ctx);
}

SSL *tls_server_new(SSL_CTX *ctx, int fd) {
    reloadable *r = reloadable_of(ctx);
    SSL_CTX *use = ctx;
    if (r) {
        pthread_mutex_lock(&r->lock);
        use = r->current;
        SSL_CTX_up_ref(use);
        pthread_mutex_unlock(&r->lock);
    }
    SSL *ssl = SSL_new(use);   /* takes its own reference */
    if (r) SSL_CTX_free(use);
    if (!ssl) return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

static bool is_ip_literal(const char *host) {
    unsigned char addr[16];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

SSL *tls_client_new(SSL_CTX *ctx, int fd, const char *host) {
    SSL *ssl = SSL_new(ctx);
    if (!ssl) return NULL;
    bool ip = is_ip_literal(host);
    int ok = SSL_set_fd(ssl, fd);
    if (ok == 1 && !ip) ok = SSL_set_tlsext_host_name(ssl, host) && SSL_set1_host(ssl, host);
    if (ok == 1 && ip) ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    if (ok != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

void tls_free(SSL *ssl, bool send_close_notify) {
    if (!ssl) return;
    if (send_close_notify) {
        ERR_clear_error();
        SSL_shutdown(ssl);   /* one non-blocking attempt; the socket closes next */
    }
    ERR_clear_error();
    SSL_free(ssl);
}

static tls_result classify(SSL *ssl, int ret) {
    switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        return TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
        /* EOF without close_notify, or a socket error: the connection is
         * over either way, and SSL_shutdown must not be called */
        ERR_clear_error();
        return TLS_ERROR;
    default:
        ERR_clear_error();
        return TLS_ERROR;
    }
}

tls_result tls_connect_step(SSL *ssl, char *err, size_t err_cap) {
    ERR_clear_error();
    int r = SSL_connect(ssl);
    if (r == 1) return TLS_OK;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ) return TLS_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE) return TLS_WANT_WRITE;
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK) {
        snprintf(err, err_cap, "TLS handshake: certificate verification failed: %s",
                 X509_verify_cert_error_string(v));
        ERR_clear_error();
    } else {
        last_error(err, err_cap, "TLS handshake",
                   e == SSL_ERROR_SYSCALL ? "connection closed by the server" : "failed");
    }
    return TLS_ERROR;
}

tls_result tls_read(SSL *ssl, void *buf, size_t len, size_t *n) {
    *n = 0;
    ERR_clear_error();
    int r = SSL_read_ex(ssl, buf, len, n);
    if (r == 1) return TLS_OK;
    return classify(ssl, r);
}

tls_result tls_write(SSL *ssl, const void *buf, size_t len, size_t *n) {
    *n = 0;
    ERR_clear_error();
    int r = SSL_write_ex(ssl, buf, len, n);
    if (r == 1) return TLS_OK;
    tls_result t = classify(ssl, r);
    return t == TLS_CLOSED ? TLS_ERROR : t;
}

bool tls_handshake_done(const SSL *ssl) { return SSL_is_init_finished(ssl); }

bool tls_pending(const SSL *ssl) { return SSL_pending(ssl) > 0; }
