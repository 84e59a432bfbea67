/* writer_prefetch.h -- the dedupe reads of a conversation writer's batch of
 * sends, made at once instead of one after another.
 *
 * A new client_msg_id still needs a store read (the owner cannot know it
 * saw every dedupe record: a restart forgets, and the record may predate
 * it). On a network store (Cassandra) each read is a round trip; made one
 * at a time they serialise the writer. So before the writer handles the
 * requests it popped, the sends' ids that are not in its recent-ids cache
 * are read by PREFETCH_THREADS helper threads and the writer itself, all in
 * flight together, and handle_send takes the answers from here. The answers
 * are only used for the batch they were read for, and forgotten when a
 * commit fails (an unknown outcome may have stored what they say is not).
 * On RocksDB (a local read) nothing is prefetched. */
#ifndef PARLEY_CHAT_WRITER_PREFETCH_H
#define PARLEY_CHAT_WRITER_PREFETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat/writer.h"
typedef struct writer_prefetch writer_prefetch;

enum { PREFETCH_THREADS = 8 };   /* per conversation writer: reads in flight = this + 1 */

/* Reads the dedupe records of the sends among reqs (replacing what was
 * prefetched before); does nothing on RocksDB or when fewer than 2. */
void writer_prefetch_dedupe(writer *w, chat_request *const *reqs, size_t n);
/* true when id was prefetched: *found (1, 0, -1 as store_get_client_msg) with conv/seq */
bool writer_prefetch_get(writer_prefetch *p, uint64_t user, uint32_t device, const uint8_t *id, size_t len,
                         int *found, uint64_t *conv, uint64_t *seq);
/* a commit failed: what was read before it may be out of date */
void writer_prefetch_forget(writer_prefetch *p);
/* stops the helper threads (after the writer's thread has stopped) */
void writer_prefetch_free(writer_prefetch *p);

#endif
