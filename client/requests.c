/* requests.c -- one request and its response: request ids, the per-attempt
 * timeout, and re-sending across reconnects for requests that may be sent
 * twice (reads, and SendMessage, which the server dedupes by client_msg_id). */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

int pc_fail(pc_client *c, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    c->status = status;
    return -1;
}

static const char *status_text(int status) {
    switch (status) {
    case PARLEY__V1__STATUS__BAD_REQUEST: return "bad request";
    case PARLEY__V1__STATUS__UNAUTHENTICATED: return "not signed in";
    case PARLEY__V1__STATUS__FORBIDDEN: return "forbidden";
    case PARLEY__V1__STATUS__NOT_FOUND: return "not found";
    case PARLEY__V1__STATUS__CONFLICT: return "conflict";
    case PARLEY__V1__STATUS__TOO_LARGE: return "too large";
    case PARLEY__V1__STATUS__RATE_LIMITED: return "rate limited";
    case PARLEY__V1__STATUS__INTERNAL: return "server error";
    case PARLEY__V1__STATUS__UNAVAILABLE: return "server unavailable";
    default: return "request failed";
    }
}

enum {
    MAX_RATE_WAITS = 50,
    MAX_RATE_WAIT_MS = 5000,
    /* after ACCEPTED (the send is durable in the server's log while its
     * store is away) the SENT with the seq comes when the store is back */
    ACCEPTED_WAIT_MS = 300000,
};

int pc_request_once(pc_client *c, pc_request *req, Parley__V1__Frame **out) {
    *out = NULL;
    if (c->fd < 0) return pc_fail(c, -1, "not connected");
    req->frame->request_id = ++c->next_request_id;
    if (req->sig) {
        if (!c->have_nonce) return pc_fail(c, -1, "no challenge to sign");
        pc_sign_challenge(c->nonce, c->host_header, req->sign_key, req->sig_buf);
        req->sig->data = req->sig_buf;
        req->sig->len = sizeof req->sig_buf;
    }
    /* events may have been handled since the last attempt */
    if (req->cursor) *req->cursor = c->delivered;
    if (pc_conn_send_frame(c, req->frame) < 0) return -1;
    req->sent = true;
    Parley__V1__Frame *resp = NULL;
    int r = pc_conn_pump(c, req->frame->request_id, pc_now_ms() + c->request_timeout_ms,
                         false, &resp, NULL);
    if (r < 0) return -1;
    if (r == 0) {
        /* A silent server is treated as a lost connection: a later attempt
         * goes over a fresh one, and a late answer cannot be confused. */
        pc_conn_drop(c);
        return pc_fail(c, -1, "no response within %d ms", c->request_timeout_ms);
    }
    const Parley__V1__Response *rs = resp->response;
    while (rs->status == PARLEY__V1__STATUS__ACCEPTED) {
        /* not a failure: durable, not stored yet; the same request id gets
         * a second answer (SENT) once it is stored */
        c->stats.accepted++;
        parley__v1__frame__free_unpacked(resp, NULL);
        resp = NULL;
        r = pc_conn_pump(c, req->frame->request_id, pc_now_ms() + ACCEPTED_WAIT_MS, false, &resp, NULL);
        if (r < 0) return -1;
        if (r == 0) {
            pc_conn_drop(c);   /* a retry carries the same client_msg_id: stored once */
            return pc_fail(c, -1, "accepted, but not stored within %d ms", ACCEPTED_WAIT_MS);
        }
        rs = resp->response;
    }
    if (rs->status != PARLEY__V1__STATUS__OK) {
        int st = (int)rs->status;
        c->retry_after_ms = rs->retry_after_ms;
        pc_fail(c, st, "%s", rs->error && rs->error[0] ? rs->error : status_text(st));
        parley__v1__frame__free_unpacked(resp, NULL);
        return -1;
    }
    *out = resp;
    return 0;
}

int pc_request_run(pc_client *c, pc_request *req, Parley__V1__Frame **out) {
    *out = NULL;
    /* the reader is mid-buffer while a callback runs: reading again from
     * inside it would pull the buffer out from under the outer loop */
    if (c->in_callback) return pc_fail(c, -1, "blocking libparley call from inside a callback");
    int budget = c->max_reconnects;
    int rate_waits = 0;
    bool attempted = false;
    req->sent = false;
    for (;;) {
        if (c->fd < 0) {
            if (!c->want_connected) return pc_fail(c, -1, "not connected");
            if (pc_reconnect(c, &budget) < 0) return -1;
            if (attempted) c->stats.retries++;
        }
        if (pc_request_once(c, req, out) == 0) {
            c->backoff_attempt = 0;
            return 0;
        }
        /* rate limited: the answer says when; waiting and sending the same
         * request again is what the limit asks for */
        /* (a wait longer than MAX_RATE_WAIT_MS is the caller's to decide:
         * the call fails and pc_retry_after_ms() says how long) */
        if (c->fd >= 0 && (c->status == PARLEY__V1__STATUS__RATE_LIMITED ||
                           c->status == PARLEY__V1__STATUS__UNAVAILABLE) &&
            c->retry_after_ms <= MAX_RATE_WAIT_MS && rate_waits++ < MAX_RATE_WAITS) {
            uint64_t wait = c->retry_after_ms ? c->retry_after_ms : 100;
            pc_sleep_ms((int)(wait < MAX_RATE_WAIT_MS ? wait : MAX_RATE_WAIT_MS));
            continue;
        }
        if (c->fd >= 0) return -1;       /* the server answered with an error */
        /* Transport loss. A request that never fully left can always be
         * sent again; one that did may have taken effect. */
        if (req->sent && !req->retry_safe) {
            return pc_fail(c, -1, "connection lost before the answer (%s); the request may "
                           "or may not have taken effect", c->error);
        }
        if (!c->want_connected || c->max_reconnects == 0) return -1;
        attempted = true;
    }
}

int pc_run(pc_client *c, Parley__V1__Frame *f, bool retry_safe, Parley__V1__Response__ResultCase want,
           Parley__V1__Frame **out) {
    pc_request req = {.frame = f, .retry_safe = retry_safe};
    if (pc_request_run(c, &req, out) < 0) return -1;
    if (want != PARLEY__V1__RESPONSE__RESULT__NOT_SET && (*out)->response->result_case != want) {
        parley__v1__frame__free_unpacked(*out, NULL);
        *out = NULL;
        return pc_fail(c, -1, "protocol error: unexpected result in the answer");
    }
    return 0;
}

int pc_run_no_result(pc_client *c, Parley__V1__Frame *f, bool retry_safe) {
    Parley__V1__Frame *resp;
    if (pc_run(c, f, retry_safe, PARLEY__V1__RESPONSE__RESULT__NOT_SET, &resp) < 0) return -1;
    parley__v1__frame__free_unpacked(resp, NULL);
    return 0;
}
