#include "gateway/http_endpoint.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "gateway/conn_auth.h"
#include "gateway/mqtt_conn.h"
#include "gateway/ops_http.h"
#include "gateway/static_files.h"
#include "net/http.h"
#include "push/push_gateway.h"

static const char SUBPROTOCOL[] = "parley.v1";

static void respond(worker *w, conn *c, const char *status, const char *extra_headers,
                    const char *content_type, const char *body, size_t body_len) {
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                     status, content_type, body_len, extra_headers ? extra_headers : "");
    buf_append(&c->out, head, (size_t)n);
    if (body_len) buf_append(&c->out, body, body_len);
    conn_close(w, c, 0, NULL);   /* HTTP state: just closes once written */
}

static void respond_text(worker *w, conn *c, const char *status, const char *body) {
    respond(w, c, status, NULL, "text/plain; charset=utf-8", body, strlen(body));
}

enum { METRICS_TEXT_MAX = 65536 };

static void serve_metrics(worker *w, conn *c) {
    char *text = malloc(METRICS_TEXT_MAX);
    if (!text) {
        respond_text(w, c, "500 Internal Server Error", "out of memory\n");
        return;
    }
    size_t n = ops_metrics_text(w->srv, text, METRICS_TEXT_MAX);
    respond(w, c, "200 OK", NULL, "text/plain; version=0.0.4", text, n);
    free(text);
}

/* The browser client's files (static_files.h). Answered only to GET;
 * the extra headers keep the page from loading anything from elsewhere
 * and from having a type guessed for it. */
static bool serve_static(worker *w, conn *c, const http_request *req, const char *path) {
    const char *root = w->srv->cfg.web_root[0] ? w->srv->cfg.web_root : static_files_default_root();
    if (!root[0] || strcmp(root, "off") == 0 || strcmp(req->method, "GET") != 0) return false;
    static_file f;
    int status = static_files_lookup(root, path, &f);
    if (status == 200) METRIC_INC(web_files_served_total);
    else METRIC_INC(web_files_refused_total);
    if (status == 404) {
        respond_text(w, c, "404 Not Found", "not found\n");
    } else if (status != 200) {
        respond_text(w, c, "500 Internal Server Error", "cannot read the file\n");
    } else {
        char extra[256];
        snprintf(extra, sizeof extra,
                 "Cache-Control: %s\r\nX-Content-Type-Options: nosniff\r\n"
                 "Content-Security-Policy: default-src 'self'; connect-src 'self'; base-uri 'none'\r\n",
                 f.cache_control);
        respond(w, c, "200 OK", extra, f.content_type, f.body, f.len);
        free(f.body);
    }
    return true;
}

static bool protocol_offered(const char *header) {
    return http_has_token(header, SUBPROTOCOL);
}

static void upgrade(worker *w, conn *c, const http_request *req) {
    const config *cfg = &w->srv->cfg;
    char accept[29];
    if (strcmp(req->method, "GET") != 0 || !http_has_token(req->connection, "upgrade") ||
        strcasecmp(req->upgrade, "websocket") != 0 || ws_accept_key(req->ws_key, accept) != 0) {
        respond_text(w, c, "400 Bad Request", "bad WebSocket upgrade request\n");
        return;
    }
    if (strcmp(req->ws_version, "13") != 0) {
        respond(w, c, "426 Upgrade Required", "Sec-WebSocket-Version: 13\r\n", "text/plain", "", 0);
        return;
    }
    /* MQTT over WebSocket (README "MQTT"), when MQTT is on and parley.v1 is not offered */
    bool mqtt = !protocol_offered(req->ws_protocol) && cfg->mqtt_host[0] && http_has_token(req->ws_protocol, "mqtt");
    if (!protocol_offered(req->ws_protocol) && !mqtt) {
        respond_text(w, c, "400 Bad Request", "the subprotocol parley.v1 is required\n");
        return;
    }
    if (cfg->allowed_origin[0] && req->origin[0] && strcmp(req->origin, cfg->allowed_origin) != 0) {
        respond_text(w, c, "403 Forbidden", "origin not allowed\n");
        return;
    }
    /* Load shedding. Retry-After tells libparley the least to wait; it
     * adds its own jitter so the clients turned away do not return together.
     * Draining: the process is going away; a restarted or another gateway
     * takes the client after a short pause. */
    if (w->draining) {
        METRIC_INC(upgrades_rejected_total);
        respond(w, c, "503 Service Unavailable", "Retry-After: 2\r\n", "text/plain",
                "draining\n", 9);
        return;
    }
    if (c->shed) {   /* over the accept rate (counted at accept) */
        respond(w, c, "503 Service Unavailable", "Retry-After: 1\r\n", "text/plain",
                "too many new connections\n", 25);
        return;
    }
    /* the sign-in state, held until sign-in (conn_auth.h) */
    conn_auth *auth = conn_auth_new(req->host, sizeof req->host - 1, clock_mono_ms());
    if (!auth) {
        respond_text(w, c, "503 Service Unavailable", "out of memory\n");
        return;
    }
    /* taken first, then checked, so workers racing for the last places
     * cannot overshoot together */
    if ((unsigned long)atomic_fetch_add(&g_metrics.connections, 1) >= cfg->max_connections) {
        atomic_fetch_sub(&g_metrics.connections, 1);
        conn_auth_free(auth);
        METRIC_INC(upgrades_rejected_total);
        respond(w, c, "503 Service Unavailable", "Retry-After: 5\r\n", "text/plain",
                "too many connections\n", 21);
        return;
    }
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
                     accept, mqtt ? "mqtt" : SUBPROTOCOL);
    /* nothing is queued before the upgrade answer: the 101 head is the
     * first unit of the output, WebSocket frames follow (worker.c cuts an
     * overflowing output at a unit boundary) */
    buf_append(&c->out, head, (size_t)n);
    c->framed = true;
    c->out_unit_left = (uint32_t)n;
    c->state = CONN_WS;
    c->last_rx_ms = (uint32_t)auth->since_ms;   /* conn_clock() */
    c->auth = auth;
    if (mqtt) {   /* no Challenge: MQTT signs in with CONNECT (mqtt_conn.c) */
        if (!mqtt_conn_accepted(w, c)) conn_close(w, c, WS_CLOSE_INTERNAL, "out of memory");
        conn_mark_dirty(w, c);   /* the 101 head goes out this turn */
        return;
    }
    session_challenge(w, c);
}

bool http_endpoint_handle(worker *w, conn *c) {
    http_request req;
    int r = http_parse_request((const char *)buf_head(&c->in), buf_len(&c->in), &req);
    if (r == HTTP_NEED_MORE) return true;
    METRIC_INC(http_requests_total);
    if (r == HTTP_BAD) {
        respond_text(w, c, "400 Bad Request", "malformed request\n");
        return false;
    }
    if (r == HTTP_TOO_LARGE) {
        respond_text(w, c, "431 Request Header Fields Too Large", "request head too large\n");
        return false;
    }
    buf_consume(&c->in, (size_t)r);
    /* the path without a query string */
    char path[sizeof req.path];
    strcpy(path, req.path);
    char *q = strchr(path, '?');
    if (q) *q = 0;
    if (strcmp(path, "/healthz") == 0) {
        int code;
        char body[OPS_HEALTH_TEXT_MAX + 1];
        snprintf(body, sizeof body, "%s\n", ops_health(w->srv, &code));
        respond_text(w, c, code == 200 ? "200 OK" : "503 Service Unavailable", body);
        return false;
    }
    /* --metrics-listen moves it off the public port (or turns it off) */
    if (strcmp(path, "/metrics") == 0 && w->srv->cfg.metrics_mode == METRICS_PUBLIC) {
        serve_metrics(w, c);
        return false;
    }
    /* the applicationServerKey a browser subscribes with (push/vapid.h) */
    if (strcmp(path, "/push/vapid-public-key") == 0) {
        if (w->srv->push) respond(w, c, "200 OK", "Cache-Control: no-cache\r\n", "text/plain",
                                  push_gateway_vapid_key_b64(w->srv->push),
                                  strlen(push_gateway_vapid_key_b64(w->srv->push)));
        else respond_text(w, c, "404 Not Found", "push is off\n");
        return false;
    }
    if (strcmp(path, "/") == 0 && req.upgrade[0]) {
        upgrade(w, c, &req);
        return c->state == CONN_WS;
    }
    if (serve_static(w, c, &req, path)) return false;
    if (strcmp(path, "/") == 0) {
        respond_text(w, c, "426 Upgrade Required",
                     "parley: connect with a WebSocket client, subprotocol parley.v1\n");
        return false;
    }
    respond_text(w, c, "404 Not Found", "not found\n");
    return false;
}

void http_endpoint_shed(worker *w, conn *c) {
    respond(w, c, "503 Service Unavailable", "Retry-After: 1\r\n", "text/plain",
            "too many new connections\n", 25);
}
