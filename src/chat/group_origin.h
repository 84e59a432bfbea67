/* group_origin.h -- a CreateGroup run twice makes one group (--kafka).
 *
 * A chat owner (cluster/chat_owner.h) commits a batch's input offsets to
 * Kafka after the writers stored it; an owner killed between the two
 * leaves the records to the next owner, which runs them again. A send
 * finds its dedupe record and is answered its first seq; a CreateGroup
 * would make a second group. So the writer stores, in the batch that
 * creates the group, which group the 'sends' record (partition, offset)
 * of (user, device, request id) created (store_put_group_origin), and a
 * CreateGroup from the log looks that up before it creates anything: when
 * found it answers the same conversation, creates nothing, and counts
 * parley_kafka_group_reruns_total. (Request ids alone would not do: a
 * client numbers its requests per connection, from 1 again after a
 * reconnect.) Requests not from the log (the embedded mode, a gateway's
 * forward without --kafka) are untouched. */
#ifndef PARLEY_CHAT_GROUP_ORIGIN_H
#define PARLEY_CHAT_GROUP_ORIGIN_H

#include <stdint.h>

#include "chat/writer_internal.h"

/* 1 with *conv: r is a CreateGroup record run again, whose first run
 * created conv (counted); 0 it is not (or r is not from the log); -1 the
 * store could not say. Writer thread. */
int group_origin_find(writer *w, const chat_request *r, uint64_t *conv);
/* r (from the log) created conv: recorded in w's open batch, with it */
void group_origin_put(writer *w, const chat_request *r, uint64_t conv);

#endif
