/* push_batch.h -- the users a writer-thread path is about to push to,
 * looked up in Redis in one round rather than one round trip each.
 *
 * On a chat node with --redis, every push to a user (push_to_user,
 * writer_push_later) asks Redis for that user's sessions on other nodes
 * (node_sessions_lookup): a round trip on the writer thread, which also
 * stores every message. A path that pushes to many users at once (the
 * DELIVERED receipt flush, a READ receipt to every member, a device list
 * change to every contact) gathers them here first, opens one pipelined
 * round for all (node_sessions_prefetch, as fan-out's route does), pushes,
 * and ends it: the pushes in between are answered from that round.
 *
 * Without --redis (srv->forward NULL) nothing is gathered: push_batch_add
 * says false and the caller pushes at once, as before. */
#ifndef PARLEY_CHAT_PUSH_BATCH_H
#define PARLEY_CHAT_PUSH_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server.h"

enum { PUSH_BATCH_MAX = 4096 };   /* users gathered (node_forward.c looks up as many at once) */

typedef struct push_batch {
    server *srv;
    uint64_t *users;   /* malloc'd, in the order added (the paths that iterate it add each user once) */
    size_t n, cap;
} push_batch;

void push_batch_init(push_batch *b, server *srv);
/* Gathers user: true. False when nothing is gathered (single node), the
 * batch holds PUSH_BATCH_MAX users, or out of memory: the caller pushes
 * to that user now (looked up alone). */
bool push_batch_add(push_batch *b, uint64_t user);
/* Looks the gathered users up at once; node_sessions_lookup on this thread
 * answers from that until push_batch_end. */
void push_batch_lookup(push_batch *b);
/* Ends the lookup round and frees the list. */
void push_batch_end(push_batch *b);

#endif
