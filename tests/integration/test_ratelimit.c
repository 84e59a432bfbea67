/* test_ratelimit.c -- the per-device send limit: past it the server answers
 * RATE_LIMITED with retry_after_ms; libparley waits that long and sends the
 * same message again, so every send still lands once and in order. */
#include <string.h>

#include "../check.h"
#include "harness.h"

static h_server S;

static void sends_past_the_limit_all_land_once(void) {
    const char *flags[] = {"--send-rate", "5", NULL};   /* bursts of 10 */
    CHECK(h_server_start(&S, flags) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    CHECK(a && b, "users");
    uint64_t conv = 0;
    CHECK(pc_open_direct(a->c, b->id.user_id, &conv) == 0, "direct: %s", pc_error(a->c));
    CHECK(h_accept(b, conv) == 0, "b accepts a");   /* not a message request: no bound */
    double limited0 = 0, limited1 = 0;
    CHECK(h_metric(&S, "parley_rate_limited_total", &limited0) == 0, "metric missing");
    uint64_t last = 0;
    for (int i = 0; i < 25; i++) {
        char text[32];
        snprintf(text, sizeof text, "burst %d", i);
        uint64_t seq = 0;
        CHECK(pc_send_text(a->c, conv, text, &seq) == 0, "send %d: %s", i, pc_error(a->c));
        CHECK(seq > last, "send %d: seq %llu after %llu", i, (unsigned long long)seq, (unsigned long long)last);
        last = seq;
    }
    CHECK(h_metric(&S, "parley_rate_limited_total", &limited1) == 0, "metric missing");
    /* 25 sends at once against a bucket of 10: the server must have refused some */
    CHECK(limited1 > limited0, "no send was rate limited (%.0f -> %.0f)", limited0, limited1);
    Parley__V1__HistoryPage *page = NULL;
    CHECK(pc_history(b->c, conv, 0, 100, &page) == 0, "history: %s", pc_error(b->c));
    size_t texts = 0;
    for (size_t i = 0; i < page->n_messages; i++)
        if (page->messages[i]->type == PARLEY__V1__MESSAGE_TYPE__TEXT) texts++;
    parley__v1__history_page__free_unpacked(page, NULL);
    CHECK(texts == 25, "history holds %zu texts, want 25 (each send exactly once)", texts);
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

int main(void) {
    RUN(sends_past_the_limit_all_land_once);
    CHECK_EXIT();
}
