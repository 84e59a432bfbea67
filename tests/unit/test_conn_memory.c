/* test_conn_memory.c -- the state that was moved out of struct conn or made
 * smaller to keep an idle connection small still does its job: the sign-in
 * state keeps the Host it is given (bounded), and a user's registry table,
 * which now starts with room for one device, grows for more devices. */
#include <string.h>

#include "../check.h"
#include "gateway/conn_auth.h"
#include "registry/registry.h"

static void auth_keeps_host_and_deadline_start(void) {
    conn_auth *a = conn_auth_new("chat.example:8443", 255, 1234);
    CHECK(a != NULL, "conn_auth_new failed");
    int same = strcmp(a->host, "chat.example:8443") == 0;
    uint64_t since = a->since_ms, rid = a->request_id;
    conn_auth_free(a);
    CHECK(same, "host not kept");
    CHECK(since == 1234, "since_ms %llu", (unsigned long long)since);
    CHECK(rid == 0, "request_id starts at %llu", (unsigned long long)rid);
}

static void auth_refuses_host_over_bound(void) {
    char host[300];
    memset(host, 'h', sizeof host - 1);
    host[sizeof host - 1] = '\0';
    conn_auth *a = conn_auth_new(host, 255, 0);
    conn_auth_free(a);
    CHECK(a == NULL, "a 299-byte Host was taken with a 255-byte bound");
    host[255] = '\0';
    a = conn_auth_new(host, 255, 0);
    size_t len = a ? strlen(a->host) : 0;
    conn_auth_free(a);
    CHECK(len == 255, "a 255-byte Host kept as %zu bytes", len);
}

static bool has_conn(const registry_entry *e, size_t n, uint64_t conn_id, uint32_t device) {
    for (size_t i = 0; i < n; i++)
        if (e[i].conn_id == conn_id && e[i].device_id == device) return true;
    return false;
}

static void registry_holds_every_device_of_a_user(void) {
    registry *r = registry_local_new();
    CHECK(r != NULL, "registry_local_new failed");
    enum { DEVICES = 5 };
    registry_entry out[8];
    for (uint32_t d = 1; d <= DEVICES; d++) {
        registry_entry e = {.conn_id = 100 + d, .device_id = d, .worker = 0};
        if (registry_add(r, 42, &e) != 0) {
            registry_free(r);
            CHECK(0, "registry_add of device %u failed", d);
        }
    }
    size_t n = registry_lookup(r, 42, out, 8);
    bool all = n == DEVICES;
    for (uint32_t d = 1; d <= DEVICES && all; d++) all = has_conn(out, n, 100 + d, d);
    registry_remove(r, 42, 103);
    size_t after = registry_lookup(r, 42, out, 8);
    bool gone = !has_conn(out, after, 103, 3) && has_conn(out, after, 101, 1) && has_conn(out, after, 105, 5);
    registry_free(r);
    CHECK(all, "lookup found %zu of %d devices, or the wrong ones", n, DEVICES);
    CHECK(after == DEVICES - 1 && gone, "after removing one: %zu entries", after);
}

int main(void) {
    RUN(auth_keeps_host_and_deadline_start);
    RUN(auth_refuses_host_over_bound);
    RUN(registry_holds_every_device_of_a_user);
    CHECK_EXIT();
}
