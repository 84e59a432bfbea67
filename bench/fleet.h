/* fleet.h -- connections spread over loops, and the phases scenarios use. */
#ifndef PARLEY_BENCH_FLEET_H
#define PARLEY_BENCH_FLEET_H

#include "bench.h"

typedef struct fleet {
    bconn **all;        /* by global index (not owned: the loops own them) */
    uint32_t n;
    bloop *loops;
    int n_loops;
} fleet;

typedef struct load_result {
    double seconds;
    uint64_t sent, acked, delivered, receipts, echoes;/* during the timed window */
    uint64_t drained_acked, drained_delivered;        /* after the drain */
    uint64_t errors, shed;
    uint64_t decrypt_errors;                          /* --e2e: must be 0 for a valid run */
    hist ack, deliv;
} load_result;

int fleet_init(fleet *f, uint32_t n, int threads);
void fleet_free(fleet *f);
bloop *fleet_loop_of(fleet *f, uint32_t i);
void fleet_reset_counters(fleet *f);
/* Connects every connection; register_new: new users (else sign in with the
 * identity they hold); sync: StartSync after. Returns how many got ready. */
uint64_t fleet_bring_up(fleet *f, bool register_new, bool sync, double timeout_s, const char *label);
/* The same for the connections in [from, to) of each loop (fractions). */
uint64_t fleet_bring_up_part(fleet *f, bool register_new, bool sync, double timeout_s,
                             const char *label, double from, double to);
void fleet_wait_pending(fleet *f, double timeout_s, const char *label);
void fleet_sync_all(fleet *f, double timeout_s);
void fleet_close_all(fleet *f);
/* Timed load: senders chosen by is_sender; rate msgs/s in total (0: max with
 * g_opt.window in flight per sender); fanout: deliveries expected per send
 * (for the drain). */
void fleet_load(fleet *f, bool (*is_sender)(fleet *, uint32_t), double rate, double seconds,
                uint64_t fanout, load_result *out);

#endif
