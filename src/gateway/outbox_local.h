/* outbox_local.h -- the write path's port (chat/outbox.h) implemented by
 * this process's workers: each call becomes worker_msgs posted to the
 * worker that owns the connection (or to every worker, for the orders about
 * a device or a user). */
#ifndef PARLEY_GATEWAY_OUTBOX_LOCAL_H
#define PARLEY_GATEWAY_OUTBOX_LOCAL_H

#include "chat/outbox.h"
#include "server.h"

/* Fills *o to post to srv's workers; o must outlive every caller (main.c
 * keeps it until the writer and fan-out have stopped). */
void outbox_local_init(outbox *o, server *srv);

#endif
