/* client.c -- a pc_client's life: options and server URL, connect, close,
 * free, and the error / status / stats accessors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "internal.h"
#include "net/tls.h"

/* Splits "ws[s]://host[:port][/path]" (scheme optional: ws; "[v6]" hosts
 * allowed). Returns 0, or -1 with the reason in c->error. */
int pc_parse_url(pc_client *c, const char *url) {
    const char *p = url;
    c->use_tls = false;
    if (strncmp(p, "ws://", 5) == 0) {
        p += 5;
    } else if (strncmp(p, "wss://", 6) == 0) {
        p += 6;
        c->use_tls = true;
    } else if (strstr(p, "://")) {
        return pc_fail(c, -1, "not a ws:// or wss:// URL: %s", url);
    }
    const char *host = p, *host_end;
    if (*p == '[') {
        host = p + 1;
        host_end = strchr(host, ']');
        if (!host_end) return pc_fail(c, -1, "bad server URL: %s", url);
        p = host_end + 1;
    } else {
        p += strcspn(p, ":/");
        host_end = p;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen >= sizeof c->host) return pc_fail(c, -1, "bad server host: %s", url);
    memcpy(c->host, host, hlen);
    c->host[hlen] = '\0';

    snprintf(c->port, sizeof c->port, "%s", c->use_tls ? "443" : "80");
    if (*p == ':') {
        p++;
        size_t plen = strspn(p, "0123456789");
        long port = plen ? strtol(p, NULL, 10) : 0;
        if (plen == 0 || plen > 5 || port <= 0 || port > 65535)
            return pc_fail(c, -1, "bad server port: %s", url);
        snprintf(c->port, sizeof c->port, "%ld", port);
        p += plen;
    }
    if (*p == '\0') {
        snprintf(c->path, sizeof c->path, "/");
    } else if (*p == '/' && strlen(p) < sizeof c->path && !strpbrk(p, " \r\n")) {
        snprintf(c->path, sizeof c->path, "%s", p);
    } else {
        return pc_fail(c, -1, "bad server URL: %s", url);
    }
    return 0;
}

static int positive_or(int v, int dflt) { return v > 0 ? v : dflt; }

pc_client *pc_new(const pc_options *opt) {
    /* safe to call repeatedly; the one piece of global state libparley has */
    if (sodium_init() < 0) return NULL;
    pc_client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pc_options o = {0};
    if (opt) o = *opt;
    c->fd = -1;
    c->connect_timeout_ms = positive_or(o.connect_timeout_ms, 5000);
    c->request_timeout_ms = positive_or(o.request_timeout_ms, 10000);
    c->reconnect_base_ms = positive_or(o.reconnect_base_ms, 100);
    c->reconnect_cap_ms = positive_or(o.reconnect_cap_ms, 5000);
    if (c->reconnect_cap_ms < c->reconnect_base_ms) c->reconnect_cap_ms = c->reconnect_base_ms;
    /* 0 means "never reconnect" (parley.h), except in an all-zero
     * pc_options, which like NULL means "all defaults" */
    bool all_zero = !o.server_url && !o.connect_timeout_ms && !o.request_timeout_ms
                    && !o.reconnect_base_ms && !o.reconnect_cap_ms && !o.max_reconnects;
    c->max_reconnects = (!opt || all_zero || o.max_reconnects < 0) ? 20 : o.max_reconnects;
    c->ping_interval_ms = o.ping_interval_ms < 0 ? 0 : positive_or(o.ping_interval_ms, PC_PING_DEFAULT_MS);
    c->retry_after_s = -1;
    c->status = 0;
    ws_reader_init(&c->reader, false, PC_MAX_SERVER_MESSAGE);
    snprintf(c->tls_ca_file, sizeof c->tls_ca_file, "%s", o.tls_ca_file ? o.tls_ca_file : "");
    if (pc_servers_init(c, o.server_url && o.server_url[0] ? o.server_url : "ws://127.0.0.1:8080") < 0)
        c->host[0] = '\0';   /* pc_connect reports c->error */
    else if (o.tls_ca_file && strlen(o.tls_ca_file) >= sizeof c->tls_ca_file) {
        pc_fail(c, -1, "tls_ca_file: path too long");
        c->host[0] = '\0';
    }
    return c;
}

void pc_free(pc_client *c) {
    if (!c) return;
    if (c->fd >= 0) pc_close(c);
    ws_reader_free(&c->reader);
    free(c->rbuf);
    tls_ctx_free(c->tls_ctx);
    pc_servers_free(c);
    pc_seen_free(&c->seen);
    sodium_memzero(&c->id, sizeof c->id);
    free(c);
}

int pc_connect(pc_client *c) {
    if (c->host[0] == '\0') return -1;   /* bad URL, error kept from pc_new */
    if (!c->server_picked) pc_servers_pick_first(c);
    /* Only overload is retried here: a refused or unreachable server on the
     * first connect is a configuration problem the caller should see now,
     * once every server of a list has been tried. */
    for (int unreachable = 0, overloaded = 0;;) {
        if (pc_conn_open(c) == 0) break;
        if (c->status != PARLEY__V1__STATUS__UNAVAILABLE) {
            if (++unreachable >= c->server_count) return -1;
        } else if (++overloaded > c->max_reconnects) {
            return -1;
        }
        pc_sleep_ms(pc_backoff_delay_ms(c));
        pc_servers_next(c);
    }
    pc_servers_connected(c);
    c->want_connected = true;
    c->backoff_attempt = 0;
    return 0;
}

void pc_close(pc_client *c) {
    if (c->fd >= 0) {
        pc_flush_acks(c);
        pc_conn_close(c, WS_CLOSE_NORMAL);
    }
    c->want_connected = false;
    c->sync_started = false;
    c->sync_done = false;
}

int pc_fd(const pc_client *c) { return c->fd; }
const char *pc_error(const pc_client *c) { return c->error; }
int pc_status(const pc_client *c) { return c->status; }
void pc_get_stats(const pc_client *c, pc_stats *out) { *out = c->stats; }
