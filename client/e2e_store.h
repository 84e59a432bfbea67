/* e2e_store.h -- the insides of a pc_e2e key store, shared by the file
 * that uses it (e2e_client.c) and the one that saves and loads it
 * (e2e_persist.c). Not part of libparley's API. */
#ifndef PARLEY_CLIENT_E2E_STORE_H
#define PARLEY_CLIENT_E2E_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "e2e/e2e.h"
#include "parley_e2e.h"

enum {
    PC_E2E_MAX_GIVEN = 65536,        /* (conversation, device) pairs handed our key */
    PC_E2E_MAX_DEVICE_LISTS = 4096,  /* users whose device list is cached; past it, fetched each time */
};

typedef struct peer {
    uint64_t user;
    uint32_t device;
    e2e_session *s;           /* the session we send with */
    e2e_session *old;         /* the one before (both sides started one at once): still read */
} peer;

typedef struct skey {
    uint64_t conv, user;
    uint32_t device;
    e2e_sender_key *k;
    e2e_sender_key *prev;     /* received only: the key before a rotation, for its late messages */
} skey;

typedef struct given {        /* our current key of conv was handed to (user, device) */
    uint64_t conv, user;
    uint32_t device, key_id;
} given;

typedef struct device_list {  /* a user's devices as GetDevices last said (not saved) */
    uint64_t user;
    uint32_t n;
    uint32_t ids[PC_E2E_MAX_DEVICES];
} device_list;

struct pc_e2e {
    e2e_identity id;
    e2e_prekey spk;
    uint8_t spk_sig[64];
    e2e_prekey otk[PC_E2E_HELD_ONE_TIME_KEYS];
    bool otk_used[PC_E2E_HELD_ONE_TIME_KEYS];
    size_t n_otk;               /* held: otk[0..n_otk), oldest first */
    uint64_t spk_made_ms;       /* wall clock when spk was made (0: unknown, rotate) */
    e2e_prekey prev_spk;        /* the one before, for X3DH begun before the rotation */
    bool has_prev_spk;
    uint64_t prev_spk_retired_ms;
    bool published;
    peer *peers;
    size_t n_peers, cap_peers;
    skey *keys;
    size_t n_keys, cap_keys;
    given *given;
    size_t n_given, cap_given;
    device_list *lists;         /* in memory only: a restarted store fetches again */
    size_t n_lists, cap_lists;
    uint64_t list_fetches;      /* GetDevices made, for pc_e2e_device_list_fetches */
    bool watching;              /* it hears DeviceListChanged: only then are lists kept */
};

/* Room for one more element in *arr (n used, *cap allocated), at most max:
 * 0, or -1 (no memory, or max reached). */
int pc_e2e_grow(void **arr, size_t *cap, size_t n, size_t elem, size_t max);
/* wall clock, ms since the epoch */
uint64_t pc_e2e_now_ms(void);

#endif
