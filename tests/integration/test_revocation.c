/* test_revocation.c -- removing a device ends its sessions at once: its
 * live connection is closed by the server, it cannot sign in again, and a
 * link token it issued before it was removed no longer adds a device. */
#include <string.h>

#include "../check.h"
#include "harness.h"

static h_server S;

/* A client for an existing identity that never reconnects: a connection
 * the server closes shows up as pc_poll returning -1. */
static pc_client *client_without_reconnects(const pc_identity *id) {
    pc_options o;
    h_client_options(&S, &o);
    o.max_reconnects = 0;
    pc_client *c = pc_new(&o);
    if (!c) return NULL;
    if (pc_connect(c) != 0 || pc_sign_in(c, id) != 0) {
        fprintf(stderr, "  sign in: %s\n", pc_error(c));
        pc_free(c);
        return NULL;
    }
    return c;
}

static void removed_device_is_cut_off(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    h_dev *primary = h_user_new(&S, NULL);
    CHECK(primary, "user");
    h_dev *second = h_device_link(&S, primary);
    CHECK(second, "second device");
    /* the second device mints a link token while it is still trusted */
    char token[256];
    uint64_t expires = 0;
    CHECK(pc_create_link_token(second->c, token, sizeof token, &expires) == 0, "token: %s",
          pc_error(second->c));
    pc_identity second_id = second->id;
    h_dev_disconnect(second);
    pc_client *live = client_without_reconnects(&second_id);
    CHECK(live, "second device signed in again");
    CHECK(pc_start_sync(live) == 0, "sync: %s", pc_error(live));

    double closed0 = 0;
    CHECK(h_metric(&S, "parley_devices_removed_closed_total", &closed0) == 0, "metric missing");
    CHECK(pc_remove_device(primary->c, second_id.device_id) == 0, "remove: %s", pc_error(primary->c));

    /* the server closes the removed device's live connection */
    int lost = 0;
    uint64_t until = h_now_ms() + 15000;
    while (!lost && h_now_ms() < until) lost = pc_poll(live, 100) < 0;
    CHECK(lost, "the removed device's connection is still open");
    double closed1 = 0;
    CHECK(h_metric(&S, "parley_devices_removed_closed_total", &closed1) == 0, "metric missing");
    CHECK(closed1 >= closed0 + 1, "close not counted (%.0f -> %.0f)", closed0, closed1);
    pc_free(live);

    /* it cannot sign in again */
    pc_options o;
    h_client_options(&S, &o);
    o.max_reconnects = 0;
    pc_client *again = pc_new(&o);
    CHECK(again && pc_connect(again) == 0, "connect");
    CHECK(pc_sign_in(again, &second_id) != 0, "a removed device signed in");
    CHECK(pc_status(again) == PARLEY__V1__STATUS__UNAUTHENTICATED, "sign-in status %d", pc_status(again));
    pc_free(again);

    /* the token it issued is revoked */
    pc_client *newcomer = pc_new(&o);
    CHECK(newcomer && pc_connect(newcomer) == 0, "connect");
    pc_identity new_id;
    pc_identity_generate(&new_id);
    int linked = pc_register_device(newcomer, token, &new_id);
    int status = pc_status(newcomer);
    pc_free(newcomer);
    CHECK(linked != 0, "a link token of a removed device added device %u", new_id.device_id);
    CHECK(status == PARLEY__V1__STATUS__UNAUTHENTICATED, "register-device status %d", status);

    /* the primary is untouched and sees one device */
    Parley__V1__DeviceList *dl = NULL;
    CHECK(pc_get_devices(primary->c, 0, &dl) == 0, "devices: %s", pc_error(primary->c));
    size_t n = dl->n_device_ids;
    uint32_t first = n ? dl->device_ids[0] : 0;
    parley__v1__device_list__free_unpacked(dl, NULL);
    CHECK(n == 1 && first == primary->id.device_id, "device list has %zu devices", n);
    h_dev_free(primary);
    h_dev_free(second);
    h_server_destroy(&S);
}

int main(void) {
    RUN(removed_device_is_cut_off);
    CHECK_EXIT();
}
