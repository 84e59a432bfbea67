/* consent.h -- message requests: each user's view of each other user
 * (none / accepted / blocked), stored by the writer (store 'A' records),
 * read by the writer and the workers. See "consent" in proto/parley.proto
 * for the policy; the bounds are here. */
#ifndef PARLEY_CHAT_CONSENT_H
#define PARLEY_CHAT_CONSENT_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

enum {
    CONSENT_NONE = 0,
    CONSENT_ACCEPTED = 1,
    CONSENT_BLOCKED = 2,
    REQUEST_MESSAGES_MAX = 20,          /* messages in a direct conversation before acceptance */
    REQUEST_DEVICE_MESSAGES_MAX = 10,   /* device messages before acceptance */
    REQUEST_KEY_CLAIMS = 3,             /* pre-key claims per window before acceptance */
    REQUEST_KEY_WINDOW_MS = 3600 * 1000,
};

/* owner's view of other; CONSENT_NONE when there is no record (or on a
 * store error: the safe answer, it grants nothing) */
int consent_state(store *s, uint64_t owner, uint64_t other);

/* May viewer see target's presence and device list? Only when they share a
 * conversation and target accepted viewer (oneself always). */
bool consent_visible(store *s, uint64_t viewer, uint64_t target);

/* Are a and b both current members of some group (not direct)
 * conversation? Members of one group exchange keys, device lists and device
 * messages (sender keys) without having accepted each other. */
bool consent_group_peers(store *s, uint64_t a, uint64_t b);

/* May viewer read target's device list (GetDevices)? Never when target
 * blocked viewer; else when target accepted viewer and they share a
 * conversation, or they are members of one group (oneself always). */
bool consent_devices_visible(store *s, uint64_t viewer, uint64_t target);

/* Is the conversation of member record m a message request for its member
 * user: has user not accepted whoever opened the direct conversation with
 * them or added them to the group? While it is, user's read marks and
 * typing are not shown to the others, and user hears no typing from them
 * (the sender of a request learns nothing of the recipient's activity). */
bool consent_is_request(store *s, uint64_t user, const Parley__Store__Member *m);

#endif
