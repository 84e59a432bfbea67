/* webpush_provider.c -- see webpush_provider.h. */
#include "push/webpush_provider.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/log.h"

enum {
    REQUEST_TIMEOUT_MS = 30000,
    CONNECT_TIMEOUT_MS = 10000,
    HOST_CONNECTIONS = 8,           /* HTTP/2 multiplexes many requests over each */
    TOTAL_CONNECTIONS = 256,
    JWT_LIFETIME_S = 12 * 3600,     /* RFC 8292: at most 24 h */
    RETRY_AFTER_MAX_S = 3600,
    PAYLOAD_MAX = 1024,             /* what the gateway sends is far smaller */
};

typedef struct request {
    CURL *easy;
    struct curl_slist *headers;
    uint8_t body[WEBPUSH_HEADER_BYTES + PAYLOAD_MAX + 17];
    size_t body_len;
    uint64_t retry_after_ms;
    push_done_fn done;
    void *ud;
    struct request *prev, *next;    /* in flight */
} request;

typedef struct webpush {
    push_provider base;
    push_config cfg;
    const vapid_key *vapid;
    CURLM *multi;
    request *in_flight;
    size_t n_in_flight;
} webpush;

int webpush_endpoint_valid(const char *endpoint, size_t len) {
    if (len < 9 || len > WEBPUSH_ENDPOINT_MAX || strncmp(endpoint, "https://", 8) != 0) return 0;
    for (size_t i = 0; i < len; i++)
        if (endpoint[i] <= 0x20 || endpoint[i] >= 0x7f) return 0;   /* also a NUL inside */
    char audience[VAPID_AUDIENCE_MAX];
    return vapid_audience_of(endpoint, audience, sizeof audience) == 0;
}

/* Retry-After in seconds (the HTTP-date form is left to our own backoff) */
static size_t on_header(char *line, size_t size, size_t n, void *ud) {
    request *r = ud;
    size_t len = size * n;
    static const char NAME[] = "retry-after:";
    if (len > sizeof NAME && strncasecmp(line, NAME, sizeof NAME - 1) == 0) {
        char value[32];
        size_t v = len - (sizeof NAME - 1);
        if (v >= sizeof value) v = sizeof value - 1;
        memcpy(value, line + sizeof NAME - 1, v);
        value[v] = 0;
        char *end;
        unsigned long s = strtoul(value, &end, 10);
        if (end != value) r->retry_after_ms = (s > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : s) * 1000ull;
    }
    return len;
}

/* the answer's body is not needed: read and dropped */
static size_t on_body(char *data, size_t size, size_t n, void *ud) {
    (void)data;
    (void)ud;
    return size * n;
}

static void request_free(request *r) {
    if (r->easy) curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    OPENSSL_cleanse(r->body, sizeof r->body);
    free(r);
}

static int add_header(request *r, const char *fmt, const char *a, unsigned long long b) {
    char line[VAPID_HEADER_MAX + 64];
    int n = a ? snprintf(line, sizeof line, fmt, a) : snprintf(line, sizeof line, fmt, b);
    if (n < 0 || (size_t)n >= sizeof line) return -1;
    struct curl_slist *grown = curl_slist_append(r->headers, line);
    if (!grown) return -1;
    r->headers = grown;
    return 0;
}

static const char *urgency_name(push_urgency u) {
    static const char *const names[] = {"very-low", "low", "normal", "high"};
    return (unsigned)u < 4 ? names[u] : "normal";
}

static int wp_send(void *impl, const push_device *device, const Parley__Store__PushSubscription *sub,
                   const uint8_t *payload, size_t len, uint32_t ttl_s, push_urgency urgency, const char *topic,
                   push_done_fn done, void *ud) {
    webpush *wp = impl;
    (void)device;
    char audience[VAPID_AUDIENCE_MAX], auth[VAPID_HEADER_MAX];
    if (!sub->endpoint || !webpush_endpoint_valid(sub->endpoint, strlen(sub->endpoint)) ||
        sub->p256dh.len != WEBPUSH_PUBLIC_KEY_BYTES || sub->auth.len != WEBPUSH_AUTH_BYTES || len > PAYLOAD_MAX ||
        vapid_audience_of(sub->endpoint, audience, sizeof audience))
        return -1;
    request *r = calloc(1, sizeof *r);
    if (!r) return -1;
    r->done = done;
    r->ud = ud;
    uint64_t exp = clock_wall_ms() / 1000 + JWT_LIFETIME_S;
    if (webpush_encrypt(sub->p256dh.data, sub->auth.data, payload, len, NULL, NULL, r->body, sizeof r->body,
                        &r->body_len) ||
        vapid_authorization(wp->vapid, audience, exp, wp->cfg.subject, auth, sizeof auth) ||
        add_header(r, "TTL: %llu", NULL, ttl_s) || add_header(r, "Urgency: %s", urgency_name(urgency), 0) ||
        (topic && add_header(r, "Topic: %s", topic, 0)) || add_header(r, "Content-Encoding: %s", "aes128gcm", 0) ||
        add_header(r, "Content-Type: %s", "application/octet-stream", 0) ||
        add_header(r, "Authorization: %s", auth, 0) || !(r->easy = curl_easy_init())) {
        request_free(r);
        return -1;
    }
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, sub->endpoint);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");   /* never http, never a redirect elsewhere */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)r->body_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);              /* wait to multiplex rather than open more */
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)REQUEST_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    if (wp->cfg.ca_file[0]) curl_easy_setopt(e, CURLOPT_CAINFO, wp->cfg.ca_file);
    if (curl_multi_add_handle(wp->multi, e) != CURLM_OK) {
        request_free(r);
        return -1;
    }
    r->next = wp->in_flight;
    if (r->next) r->next->prev = r;
    wp->in_flight = r;
    wp->n_in_flight++;
    return 0;
}

static push_outcome outcome_of(CURLcode result, long status) {
    if (result != CURLE_OK) return PUSH_RETRY;   /* no answer: the service may be back soon */
    if (status >= 200 && status < 300) return PUSH_DELIVERED;
    if (status == 404 || status == 410) return PUSH_GONE;
    if (status == 429 || status >= 500) return PUSH_RETRY;
    return PUSH_FAILED;
}

static void unlink_request(webpush *wp, request *r) {
    if (r->prev) r->prev->next = r->next;
    else wp->in_flight = r->next;
    if (r->next) r->next->prev = r->prev;
    wp->n_in_flight--;
}

static void wp_poll(void *impl, int timeout_ms) {
    webpush *wp = impl;
    int running = 0;
    curl_multi_perform(wp->multi, &running);
    curl_multi_poll(wp->multi, NULL, 0, timeout_ms, NULL);
    curl_multi_perform(wp->multi, &running);
    CURLMsg *m;
    int left = 0;
    while ((m = curl_multi_info_read(wp->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        request *r = NULL;
        long status = 0;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        CURLcode result = m->data.result;
        if (result != CURLE_OK)
            log_debug("push: request failed: %s", curl_easy_strerror(result));
        curl_multi_remove_handle(wp->multi, m->easy_handle);
        unlink_request(wp, r);
        r->done(r->ud, outcome_of(result, status), (int)status, r->retry_after_ms);
        request_free(r);
    }
}

static void wp_wakeup(void *impl) { curl_multi_wakeup(((webpush *)impl)->multi); }

static size_t wp_in_flight(void *impl) { return ((webpush *)impl)->n_in_flight; }

static void wp_free(void *impl) {
    webpush *wp = impl;
    if (!wp) return;
    while (wp->in_flight) {
        request *r = wp->in_flight;
        curl_multi_remove_handle(wp->multi, r->easy);
        unlink_request(wp, r);
        request_free(r);
    }
    if (wp->multi) curl_multi_cleanup(wp->multi);
    free(wp);
}

push_provider *webpush_provider_new(const push_config *cfg, const vapid_key *vapid) {
    webpush *wp = calloc(1, sizeof *wp);
    if (!wp) return NULL;
    wp->cfg = *cfg;
    wp->vapid = vapid;
    wp->multi = curl_multi_init();
    if (!wp->multi) {
        free(wp);
        return NULL;
    }
    curl_multi_setopt(wp->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(wp->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)HOST_CONNECTIONS);
    curl_multi_setopt(wp->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)TOTAL_CONNECTIONS);
    wp->base = (push_provider){
        .name = "webpush",
        .impl = wp,
        .send = wp_send,
        .poll = wp_poll,
        .wakeup = wp_wakeup,
        .in_flight = wp_in_flight,
        .free = wp_free,
    };
    return &wp->base;
}

void webpush_provider_free(push_provider *p) {
    if (p) p->free(p->impl);
}
