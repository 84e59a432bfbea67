/* store_watch.h -- whether a gateway worker may read the store now.
 *
 * On Cassandra a sign-in's device read, a lagging device's catch-up
 * pages (its inbox, gateway/catchup_read.h), an MQTT session's resume
 * cursor, an MQTT CONNECT's reads (gateway/mqtt_connect_read.h) and
 * History, ListConversations and LookupUser (gateway/request_read.h) go
 * to the reader pool (gateway/store_reads.h), and so do the device
 * messages a StartSync pushes (gateway/device_message_read.h); other reads
 * (receipts, devices, presence, typing) are still made on the worker's own
 * thread. While the store fails, sign-ins (WebSocket and MQTT CONNECT),
 * catch-up and device-message pages and those requests are not asked for
 * at all (below). A Cassandra node that
 * stopped answering (SIGSTOP, a long pause, a partition) keeps its
 * connections open and times every read out at the client's deadline,
 * seconds; one such read stalls the worker and every connection it serves
 * (answers, an ACCEPTED send, pings), and each device that gives up and
 * signs in again starts another. So while the store says it is failing,
 * workers do not read: a sign-in is answered UNAVAILABLE, an MQTT CONNECT
 * CONNACK server busy (the device tries again after its backoff), a History,
 * ListConversations or LookupUser UNAVAILABLE, and a lagging device (or
 * one with device messages to page) stays so (the sweep pumps it again
 * each second). A gateway-only node would then never read
 * and never see the store come back, so the watch's thread reads once a
 * second while it fails. RocksDB's reads are local and never held back. */
#ifndef PARLEY_GATEWAY_STORE_WATCH_H
#define PARLEY_GATEWAY_STORE_WATCH_H

#include <stdbool.h>

#include "server.h"

typedef struct store_watch store_watch;

/* NULL for a store whose reads do not wait (RocksDB), or out of memory:
 * then nothing is held back. */
store_watch *store_watch_start(server *srv);
void store_watch_stop(store_watch *sw);
/* Any thread: the store is failing now; do not read it from a worker. */
bool store_watch_reads_held(const server *srv);

#endif
