/* identities.h -- bench users kept in a file across runs.
 *
 * Registering a user on Cassandra costs the chat node a read, a
 * lightweight transaction and a batch on its one accounts thread (about
 * 100 users/s on this machine), so 190,000 users take half an hour: a
 * multi-step run registers them once and every later run signs them in
 * again. The file is a flat array of fixed records (user id, device id,
 * Ed25519 secret key), one per global connection index; each bench
 * process reads and writes only its own slice. It holds secret keys of
 * throwaway bench users: keep it in a build directory, never commit it. */
#ifndef PARLEY_BENCH_IDENTITIES_H
#define PARLEY_BENCH_IDENTITIES_H

#include <stdint.h>

#include "fleet.h"

/* Fills f->all[i] (user, device, key) from records [offset, offset + f->n)
 * of path. Returns 0 when every one of them is in the file and registered,
 * -1 otherwise (then nothing is assumed of f: register them). */
int identities_load(const char *path, uint64_t offset, fleet *f);
/* Writes f->all[i] as records [offset, offset + f->n) of path (created
 * 0600 when absent; other records are left as they are). A connection
 * that was not registered is written as a zero record. 0 or -1. */
int identities_save(const char *path, uint64_t offset, const fleet *f);

#endif
