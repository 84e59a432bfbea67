/* test_metrics_listen.c -- where /metrics is served: on the public port by
 * default (with the store's and fan-out's counters in it); with
 * --metrics-listen HOST:PORT on that listener only (plain HTTP, /healthz
 * there too) and not on the public port; with --metrics-listen off nowhere. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "harness.h"

#define NEED(x) CHECK((x), "%s", #x)

enum { BODY_MAX = 1 << 17 };
static char body[BODY_MAX];

static int get(int port, const char *path) {
    int st = 0;
    if (h_http_get(port, path, &st, body, sizeof body) != 0) return -1;
    return st;
}

static void metrics_on_the_public_port_by_default(void) {
    static h_server S;
    NEED(h_server_start(&S, NULL) == 0);
    CHECK(get(S.port, "/metrics") == 200, "public /metrics");
    CHECK(strstr(body, "\nparley_store_disk_full 0\n") && strstr(body, "\nparley_store_writes_refused_total 0\n") &&
              strstr(body, "\nparley_fanout_commit_failures_total 0\n"),
          "store and fan-out counters missing:\n%.2000s", body);
    CHECK(get(S.port, "/healthz") == 200 && strcmp(body, "ok\n") == 0, "healthz '%s'", body);
    h_server_destroy(&S);
}

static void metrics_listen_moves_them_off_the_public_port(void) {
    static h_server S;
    char where[64];
    int mport = h_free_port();
    NEED(mport > 0);
    snprintf(where, sizeof where, "127.0.0.1:%d", mport);
    const char *flags[] = {"--metrics-listen", where, NULL};
    NEED(h_server_start(&S, flags) == 0);
    CHECK(get(S.port, "/metrics") == 404, "the public port still serves /metrics");
    CHECK(get(mport, "/metrics") == 200, "/metrics on the metrics listener");
    CHECK(strstr(body, "\nparley_connections ") && strstr(body, "\nparley_store_disk_free_bytes "),
          "metrics listener body:\n%.2000s", body);
    CHECK(get(mport, "/healthz") == 200 && strcmp(body, "ok\n") == 0, "metrics listener healthz '%s'", body);
    CHECK(get(mport, "/") == 404, "the metrics listener answers other paths");
    /* clients are still served on the public port */
    h_dev *d = h_user_new(&S, NULL);
    CHECK(d, "a device on the public port");
    h_server_destroy(&S);
}

static void metrics_listen_off(void) {
    static h_server S;
    const char *flags[] = {"--metrics-listen", "off", NULL};
    NEED(h_server_start(&S, flags) == 0);
    CHECK(get(S.port, "/metrics") == 404, "/metrics served with --metrics-listen off");
    CHECK(get(S.port, "/healthz") == 200, "healthz");
    h_server_destroy(&S);
}

int main(void) {
    RUN(metrics_on_the_public_port_by_default);
    RUN(metrics_listen_moves_them_off_the_public_port);
    RUN(metrics_listen_off);
    CHECK_EXIT();
}
