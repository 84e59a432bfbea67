/* accounts_names.h -- the user names the accounts owner claimed for its
 * open batch, so that a batch that fails gives them back
 * (store_release_user_name) instead of leaving them taken by a user that
 * was never stored: the client's retry of its registration then gets its
 * name, not CONFLICT. */
#ifndef PARLEY_CHAT_ACCOUNTS_NAMES_H
#define PARLEY_CHAT_ACCOUNTS_NAMES_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

enum {
    ACCOUNTS_NAMES_MAX = 512,   /* = BATCH_MAX: one registration per request of a batch */
    ACCOUNTS_NAME_CHARS = 32,   /* = MAX_NAME */
};

typedef struct accounts_names {
    struct {
        char name[ACCOUNTS_NAME_CHARS + 1];
        uint64_t user;
    } claimed[ACCOUNTS_NAMES_MAX];
    size_t n;
} accounts_names;

/* name was claimed for user and the open batch stores that user */
void accounts_names_claimed(accounts_names *a, const char *name, uint64_t user);
/* the open batch committed (rc 0) or failed: on failure every name it
 * claimed is given back; either way the list is emptied */
void accounts_names_settle(accounts_names *a, store *s, int rc);

#endif
