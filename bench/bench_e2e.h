/* bench_e2e.h -- parley-bench --e2e: the clients' Sender Keys work on the
 * load path (client/e2e), so the figures include the real crypto and the
 * real ciphertext size on the wire and in the store.
 *
 * Each sending connection holds its own sender key for its conversation;
 * every other member's connection holds the matching receiving state. The
 * keys are handed over inside the bench process at setup (no pairwise
 * device messages): key distribution is measured apart (bench/RESULTS.md,
 * parley-e2e-cost and test_e2e_strangers), not in these figures.
 * A state has one owner, the connection, which lives on one loop thread. */
#ifndef PARLEY_BENCH_E2E_H
#define PARLEY_BENCH_E2E_H

#include <stddef.h>
#include <stdint.h>

#include "bench.h"

/* The members' sender keys of one conversation: every member for which
 * sends(index) is true creates one, every other member gets its receiving
 * state. 0, or -1 on failure (out of memory). */
int bench_e2e_distribute(bconn *const *members, uint32_t n, bool (*sends)(uint32_t index));
void bench_e2e_free(bconn *c);

/* Encrypts pt with c's own sender key; *out is malloc'd (the caller frees). */
int bench_e2e_seal(bconn *c, const uint8_t *pt, size_t len, uint8_t **out, size_t *out_len);

/* Bytes of the last ciphertext sent (the body's size on the wire and in
 * the store), for the report. */
extern _Atomic size_t g_e2e_wire_bytes;
/* Set when a run saw a delivery that did not decrypt: main exits 3. */
extern bool g_e2e_run_invalid;

enum { BENCH_E2E_OWN = 1 };
/* Decrypts (and verifies the signature of) a delivered body: 0 and *pt
 * (malloc'd) for a peer's message, BENCH_E2E_OWN for c's own message pushed
 * back (a client knows its own plaintext: not decrypted), or a negative
 * e2e_status (E2E_ERR_WRONG_KEY for a key c does not hold). */
int bench_e2e_open(bconn *c, const uint8_t *msg, size_t len, uint8_t **pt, size_t *pt_len);

#endif
