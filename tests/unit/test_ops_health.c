/* test_ops_health.c -- /healthz of a node (src/gateway/ops_http.c): "ok"
 * with nothing to wait for; 503 "waiting for A, B" naming exactly the
 * dependencies that wait now (issue 13: Redis, the link to the chat node,
 * Kafka), in the order given; back to "ok" once they stop waiting or are
 * removed; the bounds on names and entries. No store (NULL): the store's
 * own health is test_storage's. */
#include <stdbool.h>
#include <string.h>

#include "../check.h"
#include "gateway/ops_http.h"

static bool redis_down, link_down;
static bool is_set(void *ctx) { return *(bool *)ctx; }

static server srv;   /* zeroed: no store */

static void nothing_to_wait_for_is_ok(void) {
    int code = 0;
    const char *h = ops_health(&srv, &code);
    CHECK(code == 200 && strcmp(h, "ok") == 0, "%d %s", code, h);
}

static void names_exactly_what_waits(void) {
    redis_down = true;
    link_down = false;
    CHECK(ops_health_wait_on("redis", is_set, &redis_down) == 0, "register redis");
    CHECK(ops_health_wait_on("chat link", is_set, &link_down) == 0, "register chat link");
    int code = 0;
    const char *h = ops_health(&srv, &code);
    CHECK(code == 503 && strcmp(h, "waiting for redis") == 0, "%d '%s'", code, h);
    link_down = true;
    h = ops_health(&srv, &code);
    CHECK(code == 503 && strcmp(h, "waiting for redis, chat link") == 0, "%d '%s'", code, h);
    redis_down = false;
    h = ops_health(&srv, &code);
    CHECK(code == 503 && strcmp(h, "waiting for chat link") == 0, "%d '%s'", code, h);
    link_down = false;
    h = ops_health(&srv, &code);
    CHECK(code == 200 && strcmp(h, "ok") == 0, "%d '%s'", code, h);
    /* removed: no longer asked, even if its flag says waiting */
    link_down = true;
    ops_health_wait_off(&link_down);
    ops_health_wait_off(&redis_down);
    h = ops_health(&srv, &code);
    CHECK(code == 200 && strcmp(h, "ok") == 0, "after removal: %d '%s'", code, h);
}

static void bounds(void) {
    static bool flags[OPS_HEALTH_WAITS + 1];
    char longname[OPS_HEALTH_NAME_MAX + 1];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK(ops_health_wait_on(longname, is_set, &flags[0]) == -1, "a name of %d bytes accepted", OPS_HEALTH_NAME_MAX);
    CHECK(ops_health_wait_on("", is_set, &flags[0]) == -1, "an empty name accepted");
    CHECK(ops_health_wait_on("x", NULL, &flags[0]) == -1, "no function accepted");
    longname[OPS_HEALTH_NAME_MAX - 1] = '\0';   /* the longest allowed */
    for (int i = 0; i < OPS_HEALTH_WAITS; i++) {
        flags[i] = true;
        CHECK(ops_health_wait_on(longname, is_set, &flags[i]) == 0, "entry %d refused", i);
    }
    CHECK(ops_health_wait_on("kafka", is_set, &flags[OPS_HEALTH_WAITS]) == -1, "entry %d accepted",
          OPS_HEALTH_WAITS + 1);
    int code = 0;
    const char *h = ops_health(&srv, &code);
    size_t want = strlen("waiting for ") + OPS_HEALTH_WAITS * (OPS_HEALTH_NAME_MAX - 1) + (OPS_HEALTH_WAITS - 1) * 2;
    CHECK(code == 503 && strlen(h) == want && strlen(h) < OPS_HEALTH_TEXT_MAX,
          "all the longest names waiting: %d, %zu bytes, want %zu", code, strlen(h), want);
    for (int i = 0; i < OPS_HEALTH_WAITS; i++) ops_health_wait_off(&flags[i]);
    h = ops_health(&srv, &code);
    CHECK(code == 200, "after removal: %d '%s'", code, h);
}

int main(void) {
    RUN(nothing_to_wait_for_is_ok);
    RUN(names_exactly_what_waits);
    RUN(bounds);
    CHECK_EXIT();
}
