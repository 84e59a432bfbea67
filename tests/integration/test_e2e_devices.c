/* test_e2e_devices.c -- two users with three devices each, end to end
 * encrypted through the real server with libparley's key store:
 *   - in their direct conversation each of the six devices sends a message;
 *     every other device decrypts every one of them, in order, the sender's
 *     own other devices included (nothing fails, nothing else comes out)
 *   - afterwards no plaintext sent is anywhere under the server's directory
 *     (data and log), while a control message sent in the clear is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../check.h"
#include "e2e/e2e.h"
#include "e2e_reader.h"
#include "harness.h"
#include "parley_e2e.h"

enum { WAIT_MS = 20000, DEVICES = 6 };

static h_server S;

/* ------------------------------------------------------- plaintext scan */

/* ------------------------------------------------------------------ case */

/* in order: the texts a reader decrypted are those sent to it, in the order sent */
static int in_order(const reader *r, char texts[][64], int sender) {
    size_t k = 0;
    for (int i = 0; i < DEVICES; i++) {
        if (i == sender) continue;
        if (k >= r->n_texts || strcmp(r->texts[k], texts[i]) != 0) return 0;
        k++;
    }
    return k == r->n_texts;
}

static void three_devices_each(void) {
    h_dev *d[DEVICES] = {0};
    CHECK((d[0] = h_user_new(&S, NULL)) && (d[3] = h_user_new(&S, NULL)), "alice and bob");
    for (int i = 1; i < 3; i++) CHECK((d[i] = h_device_link(&S, d[0])) && (d[3 + i] = h_device_link(&S, d[3])), "devices");
    uint64_t conv = 0;
    CHECK(pc_open_direct(d[0]->c, d[3]->id.user_id, &conv) == 0 && pc_accept_request(d[3]->c, conv) == 0,
          "direct: %s / %s", pc_error(d[0]->c), pc_error(d[3]->c));
    reader *r[DEVICES] = {0};
    for (int i = 0; i < DEVICES; i++) CHECK((r[i] = reader_new(d[i], conv)) != NULL, "key store %d", i);
    for (int i = 0; i < DEVICES; i++) CHECK(h_dev_sync(d[i], WAIT_MS) == 0, "sync %s", d[i]->name);

    uint64_t members[2] = {d[0]->id.user_id, d[3]->id.user_id};
    char texts[DEVICES][64];
    uint32_t tag = randombytes_random();
    for (int i = 0; i < DEVICES; i++) {
        snprintf(texts[i], sizeof texts[i], "device-%d-secret-%08x", i, tag);
        uint64_t seq = 0;
        CHECK(pc_e2e_send(r[i]->e, d[i]->c, conv, members, 2, texts[i], strlen(texts[i]), &seq) == 0,
              "%s sends: %s", d[i]->name, pc_error(d[i]->c));
        reader *others[DEVICES - 1];
        size_t n = 0;
        for (int j = 0; j < DEVICES; j++)
            if (j != i) others[n++] = r[j];
        goal g = {others, n, texts[i]};
        CHECK(h_pump(d, DEVICES, pred_decrypted, &g, WAIT_MS), "message of device %d not decrypted by all five others",
              i);
    }
    for (int i = 0; i < DEVICES; i++) {
        CHECK(r[i]->n_texts == DEVICES - 1 && in_order(r[i], texts, i), "device %d decrypted %zu texts, or out of order",
              i, r[i]->n_texts);
        CHECK(r[i]->failures == 0 && r[i]->dm_failures == 0, "device %d: failures", i);
    }

    char control[64];
    snprintf(control, sizeof control, "devices-control-clear-%08x", tag);
    CHECK(h_send(d[0], conv, control) != 0, "control message");
    int control_hits = 0;
    for (int i = 0; i < 50 && (control_hits = files_holding(S.dir, control, 0)) == 0; i++) h_pump(d, DEVICES, NULL, NULL, 100);
    CHECK(control_hits > 0, "the clear control message is nowhere under %s: the scan proves nothing", S.dir);
    for (int i = 0; i < DEVICES; i++) CHECK(files_holding(S.dir, texts[i], 1) == 0, "plaintext %d is on the server", i);

    for (int i = 0; i < DEVICES; i++) {
        pc_e2e_free(r[i]->e);
        h_free(r[i]);
        h_dev_free(d[i]);
    }
}

int main(void) {
    if (sodium_init() < 0 || h_server_start(&S, NULL) != 0) {
        printf("FAIL server_starts\n");
        return 1;
    }
    RUN(three_devices_each);
    if (!h_server_survived(&S)) check_failures_total++;
    h_server_destroy(&S);
    CHECK_EXIT();
}
