/* queue.h -- the write path's hand-off to fan-out, keyed by conversation.
 *
 * Every published item is already durable: the write path stores the
 * message and a log entry (partition, offset) in the same commit before it
 * publishes. So the embedded queue (queue_local.c) is only memory, and on
 * restart fan-out rebuilds it from the store's log past its checkpoint
 * (fanout_replay). A Kafka implementation keeps its own offsets instead. */
#ifndef PARLEY_QUEUE_H
#define PARLEY_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/blob.h"

typedef struct queue_item {
    uint32_t partition;
    uint64_t offset;
    uint64_t conversation_id;
    uint64_t seq;
    uint64_t sender_user_id;
    uint64_t ts;          /* the message's server_ts */
    bool membership;      /* a MEMBERSHIP message: who is a member changed */
    bool replayed;        /* read again from the fan-out log (fanout_replay): some inboxes may hold it */
    uint32_t deliveries;  /* set by the queue at publish: the deliveries reserved for it (below) */
    blob *message;        /* encoded parley.v1.Message; the item holds one reference */
} queue_item;

typedef struct queue queue;

/* consumers: how many read it (the fan-out threads). Each item goes to
 * one consumer, the one of its conversation partition (partition mod
 * consumers), so one consumer sees all of a conversation's items, in the
 * order published. */
queue *queue_local_new(size_t capacity, uint32_t consumers);
void queue_free(queue *q);
/* Takes ownership of item. Blocks while the queue is full (backpressure on
 * the write path). 0, or -1 once closed (the item is freed). */
int queue_publish(queue *q, queue_item *item);
/* The same for items[0..n) in that order, with one lock per consumer for
 * all of them (a writer publishes a whole group commit at once). */
int queue_publish_many(queue *q, queue_item **items, size_t n);
/* Up to max items for consumer (0 .. consumers-1), waiting at most
 * timeout_ms for the first. 0 items and a closed queue: consumers stop. */
size_t queue_consume(queue *q, uint32_t consumer, queue_item **out, size_t max, int timeout_ms);
/* A file descriptor that polls readable when items were published to
 * consumer (an eventfd; queue_consume with timeout 0 clears it), so a
 * consumer can wait for its items and for other work at once. */
int queue_wake_fd(queue *q, uint32_t consumer);
int queue_closed(queue *q);
void queue_close(queue *q);
size_t queue_depth(queue *q);   /* the deepest consumer's */
void queue_item_free(queue_item *item);

/* The bound in deliveries (receivers x messages), not items: a group of 250
 * makes 250 inbox appends and deliveries per message, so a bound in items
 * lets writers run a million deliveries ahead of fan-out. Each published
 * item reserves its conversation's receivers as fan-out last counted them
 * (queue_note_receivers), or unknown_weight for a conversation not yet
 * seen, each capped at max; a publish whose reservation would take the
 * pending deliveries past max waits (in order, in as few waits as fit) until
 * fan-out has routed enough. max 0: no bound. Set before anything is
 * published. An estimate short of the count (a group that grew since fan-out
 * last read it) is corrected when fan-out reads the message: by that much
 * the count can pass the bound. */
void queue_bound_deliveries(queue *q, uint64_t max, uint32_t unknown_weight);
/* fan-out read item and found receivers for it: they replace its
 * reservation in the pending count, and are the conversation's next estimate */
void queue_deliveries_counted(queue *q, const queue_item *item, uint32_t receivers);
/* fan-out routed n deliveries it had counted: room for the writers */
void queue_deliveries_done(queue *q, uint64_t n);
/* deliveries published and not yet routed (0: fan-out has committed and
 * routed everything published that had a receiver) */
long queue_pending_deliveries(queue *q);
/* the pending deliveries, their bound, highest count and hand-offs that
 * waited (Prometheus text, process-wide); returns the length */
size_t queue_metrics_render(char *out, size_t cap);

#endif
