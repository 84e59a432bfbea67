/* accounts_names.c -- see accounts_names.h. A name whose release fails too
 * (the store away) stays claimed by an id with no user; the store takes
 * such an orphan over for a later claim once it is old enough
 * (store_cassandra_claim.c). */
#include "chat/accounts_names.h"

#include <stdlib.h>
#include <string.h>

#include "chat/writer_internal.h"
#include "core/log.h"

_Static_assert((int)ACCOUNTS_NAMES_MAX == (int)BATCH_MAX, "one registration per request of a batch");
_Static_assert((int)ACCOUNTS_NAME_CHARS == (int)MAX_NAME, "names are checked against MAX_NAME first");

void accounts_names_claimed(accounts_names *a, const char *name, uint64_t user) {
    size_t n = strlen(name);
    /* bounded by BATCH_MAX requests per batch, names by valid_user_name */
    if (a->n == ACCOUNTS_NAMES_MAX || n > ACCOUNTS_NAME_CHARS) abort();
    memcpy(a->claimed[a->n].name, name, n + 1);
    a->claimed[a->n].user = user;
    a->n++;
}

void accounts_names_settle(accounts_names *a, store *s, int rc) {
    for (size_t i = 0; rc != 0 && i < a->n; i++) {
        int released = store_release_user_name(s, a->claimed[i].name, a->claimed[i].user);
        if (released < 0)
            log_warn("accounts: user name '%s' stays claimed after its registration failed (taken over later)",
                     a->claimed[i].name);
    }
    a->n = 0;
}
