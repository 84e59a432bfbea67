/* test_e2e_group.c -- end-to-end encrypted group messages through the real
 * server with libparley's key store (client/parley_e2e.h):
 *   - a group of alice (two devices), bob and carol: every other device
 *     decrypts each message; sender keys travel as pairwise-encrypted device
 *     messages (X3DH sessions from FetchKeys bundles)
 *   - bob's key store is saved and loaded mid-conversation (a restart) and
 *     he goes on reading, replays of what he read before still refused
 *   - carol is removed and alice's next send rotates by itself: it is read
 *     by the members and not by carol, even with its ciphertext in hand;
 *     dave, never a member, reads nothing; a tampered or replayed ciphertext
 *     is refused; alice removes her second device: her next message (a new
 *     key again) is read by bob and not by the removed device
 *   - the server never held plaintext: no plaintext sent is anywhere in its
 *     data directory or its log, while a control message sent in the clear
 *     is found there (the scan can see what the store holds). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../check.h"
#include "e2e/e2e.h"
#include "e2e_reader.h"
#include "harness.h"
#include "parley_e2e.h"

enum { WAIT_MS = 20000 };

static h_server S;

/* The recorded ciphertext of the message with text t's seq in d's record. */
static const h_event *event_of(const h_dev *d, uint64_t conv, uint64_t seq) {
    for (size_t i = 0; i < d->n_ev; i++)
        if (d->ev[i].conversation_id == conv && d->ev[i].seq == seq) return &d->ev[i];
    return NULL;
}

/* ------------------------------------------------------- plaintext scan */

/* ------------------------------------------------------------------ case */

static void group_encrypted_end_to_end(void) {
    h_dev *alice = h_user_new(&S, NULL), *bob = h_user_new(&S, NULL), *carol = h_user_new(&S, NULL);
    h_dev *dave = h_user_new(&S, NULL);
    CHECK(alice && bob && carol && dave, "users");
    h_dev *alice2 = h_device_link(&S, alice);
    CHECK(alice2, "alice's second device");
    uint64_t invited[2] = {bob->id.user_id, carol->id.user_id}, conv = 0;
    CHECK(pc_create_group(alice->c, "e2e", invited, 2, &conv) == 0, "group: %s", pc_error(alice->c));
    CHECK(pc_accept_request(bob->c, conv) == 0 && pc_accept_request(carol->c, conv) == 0, "accept: %s / %s",
          pc_error(bob->c), pc_error(carol->c));
    /* bob and carol also accept each other through a direct conversation
     * (no longer needed since group members get each other's keys:
     * test_e2e_strangers covers a group where no pair accepted) */
    uint64_t direct = 0;
    CHECK(pc_open_direct(bob->c, carol->id.user_id, &direct) == 0 && pc_accept_request(carol->c, direct) == 0,
          "bob and carol: %s / %s", pc_error(bob->c), pc_error(carol->c));

    reader *ra = reader_new(alice, conv), *ra2 = reader_new(alice2, conv), *rb = reader_new(bob, conv);
    reader *rc = reader_new(carol, conv), *rd = reader_new(dave, conv);
    CHECK(ra && ra2 && rb && rc && rd, "key stores");
    h_dev *all[5] = {alice, alice2, bob, carol, dave};
    for (int i = 0; i < 5; i++) CHECK(h_dev_sync(all[i], WAIT_MS) == 0, "sync %s", all[i]->name);

    /* unique plaintexts, so a hit in the scan can only be ours */
    char p1[64], p2[64], p3[64], control[64];
    uint32_t tag = randombytes_random();
    snprintf(p1, sizeof p1, "e2e-secret-one-%08x", tag);
    snprintf(p2, sizeof p2, "e2e-secret-two-%08x", tag);
    snprintf(p3, sizeof p3, "e2e-secret-three-%08x", tag);
    snprintf(control, sizeof control, "e2e-control-in-the-clear-%08x", tag);
    uint64_t members[3] = {alice->id.user_id, bob->id.user_id, carol->id.user_id};

    uint64_t seq1 = 0, seq2 = 0, seq3 = 0;
    CHECK(pc_e2e_send(ra->e, alice->c, conv, members, 3, p1, strlen(p1), &seq1) == 0, "alice sends: %s",
          pc_error(alice->c));
    reader *first[3] = {ra2, rb, rc};
    goal g1 = {first, 3, p1};
    CHECK(h_pump(all, 5, pred_decrypted, &g1, WAIT_MS), "message 1 not decrypted by all: alice2 %zu bob %zu carol %zu",
          ra2->n_texts, rb->n_texts, rc->n_texts);

    CHECK(pc_e2e_send(rb->e, bob->c, conv, members, 3, p2, strlen(p2), &seq2) == 0, "bob sends: %s", pc_error(bob->c));
    reader *second[3] = {ra, ra2, rc};
    goal g2 = {second, 3, p2};
    CHECK(h_pump(all, 5, pred_decrypted, &g2, WAIT_MS), "message 2 not decrypted by all");

    /* bob's device restarts mid-conversation: its key store is saved and
     * loaded back (the same bytes again), and it goes on below (message 3
     * comes with a new sender key over the loaded pairwise session) */
    uint8_t *saved = NULL, *again = NULL;
    size_t saved_len = 0, again_len = 0;
    CHECK(pc_e2e_save(rb->e, &saved, &saved_len) == 0, "save bob's key store");
    pc_e2e *cut = NULL;
    int cut_st = pc_e2e_load(&cut, saved, saved_len - 1);
    pc_e2e_free(rb->e);
    int load_st = pc_e2e_load(&rb->e, saved, saved_len);
    int same = load_st == 0 && pc_e2e_save(rb->e, &again, &again_len) == 0 && again_len == saved_len &&
               memcmp(saved, again, saved_len) == 0;
    free(saved);
    free(again);
    CHECK(cut_st != 0 && !cut, "a truncated key store was loaded");
    CHECK(same, "bob's key store did not come back byte for byte (load: %s)", e2e_strerror(load_st));

    /* carol is removed; alice's next send rotates by itself (her key went
     * to carol's device, no longer a member's) */
    CHECK(pc_remove_member(alice->c, conv, carol->id.user_id) == 0, "remove carol: %s", pc_error(alice->c));
    uint64_t remaining[2] = {alice->id.user_id, bob->id.user_id};
    CHECK(pc_e2e_send(ra->e, alice->c, conv, remaining, 2, p3, strlen(p3), &seq3) == 0, "alice sends 3: %s",
          pc_error(alice->c));
    reader *third[2] = {ra2, rb};
    goal g3 = {third, 2, p3};
    CHECK(h_pump(all, 5, pred_decrypted, &g3, WAIT_MS), "message 3 not decrypted by alice2 and bob");
    /* and nothing else came out: each decrypted exactly the texts sent to it */
    CHECK(ra->n_texts == 1 && ra2->n_texts == 3 && rb->n_texts == 2 && rc->n_texts == 2,
          "decrypted counts alice %zu alice2 %zu bob %zu carol %zu", ra->n_texts, ra2->n_texts, rb->n_texts,
          rc->n_texts);
    CHECK(ra->dm_failures + ra2->dm_failures + rb->dm_failures + rc->dm_failures == 0, "device messages failed");
    CHECK(ra->failures + ra2->failures + rb->failures + rc->failures == 0, "messages failed to decrypt");

    /* what carol and dave can do with the ciphertexts the store holds */
    const h_event *e3 = event_of(bob, conv, seq3), *e1 = event_of(bob, conv, seq1);
    CHECK(e3 && e1 && e3->body_len <= H_BODY_MAX && e1->body_len <= H_BODY_MAX, "bob's copies of 1 and 3");
    Parley__V1__Message m3 = as_message(e3), m1 = as_message(e1);
    uint8_t *pt = NULL;
    size_t n = 0;
    int st = pc_e2e_decrypt(rc->e, &m3, &pt, &n);
    free(pt);
    CHECK(st == E2E_ERR_WRONG_KEY, "carol, removed, on message 3: %s", st == 0 ? "decrypted" : e2e_strerror(st));
    st = pc_e2e_decrypt(rd->e, &m1, &pt, &n);
    free(pt);
    CHECK(st == E2E_ERR_WRONG_KEY, "dave, never a member, on message 1: %s", st == 0 ? "decrypted" : e2e_strerror(st));
    /* replayed and tampered */
    st = pc_e2e_decrypt(rb->e, &m1, &pt, &n);
    free(pt);
    CHECK(st == E2E_ERR_REPLAY, "bob, message 1 again: %s", st == 0 ? "decrypted" : e2e_strerror(st));
    uint8_t copy[H_BODY_MAX];
    memcpy(copy, e3->body, e3->body_len);
    copy[e3->body_len / 2] ^= 0x01;
    Parley__V1__Message bad = m3;
    bad.body.data = copy;
    st = pc_e2e_decrypt(ra2->e, &bad, &pt, &n);
    free(pt);
    CHECK(st == E2E_ERR_AUTH, "alice2, message 3 tampered: %s", st == 0 ? "decrypted" : e2e_strerror(st));

    /* alice removes her second device: her next send rotates again; bob
     * reads it, the removed device's store cannot (with the ciphertext) */
    CHECK(pc_remove_device(alice->c, alice2->id.device_id) == 0, "remove alice2: %s", pc_error(alice->c));
    char p4[64];
    snprintf(p4, sizeof p4, "e2e-secret-four-%08x", tag);
    uint64_t seq4 = 0;
    CHECK(pc_e2e_send(ra->e, alice->c, conv, remaining, 2, p4, strlen(p4), &seq4) == 0, "alice sends 4: %s",
          pc_error(alice->c));
    h_dev *left[2] = {alice, bob};
    reader *fourth[1] = {rb};
    goal g4 = {fourth, 1, p4};
    CHECK(h_pump(left, 2, pred_decrypted, &g4, WAIT_MS), "message 4 not decrypted by bob");
    const h_event *e4 = event_of(bob, conv, seq4);
    CHECK(e4 && e4->body_len <= H_BODY_MAX, "bob's copy of 4");
    Parley__V1__Message m4 = as_message(e4);
    st = pc_e2e_decrypt(ra2->e, &m4, &pt, &n);
    free(pt);
    CHECK(st == E2E_ERR_WRONG_KEY, "the removed device on message 4: %s", st == 0 ? "decrypted" : e2e_strerror(st));

    /* the server never had a plaintext; a clear one is found, so the scan sees the store */
    CHECK(h_send(alice, conv, control) != 0, "control message");
    int control_hits = 0;
    for (int i = 0; i < 50 && (control_hits = files_holding(S.dir, control, 0)) == 0; i++) h_pump(left, 2, NULL, NULL, 100);
    CHECK(control_hits > 0, "the clear control message is nowhere under %s: the scan proves nothing", S.dir);
    const char *secrets[4] = {p1, p2, p3, p4};
    for (int i = 0; i < 4; i++) CHECK(files_holding(S.dir, secrets[i], 1) == 0, "plaintext %d is on the server", i + 1);

    reader *rs[5] = {ra, ra2, rb, rc, rd};
    for (int i = 0; i < 5; i++) {
        pc_e2e_free(rs[i]->e);
        h_free(rs[i]);
    }
    for (int i = 0; i < 5; i++) h_dev_free(all[i]);
}

int main(void) {
    if (sodium_init() < 0 || h_server_start(&S, NULL) != 0) {
        printf("FAIL server_starts\n");
        return 1;
    }
    RUN(group_encrypted_end_to_end);
    if (!h_server_survived(&S)) check_failures_total++;
    h_server_destroy(&S);
    CHECK_EXIT();
}
