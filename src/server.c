/* server.c -- the write path's parts of one process, started and stopped
 * in one place: the server, the request-dispatch fuzz target and the tests
 * that run the write path without sockets all assemble the same thing. */
#include "server.h"

#include "chat/recent_inbox.h"
#include "chat/writer.h"
#include "core/quota.h"
#include "fanout/fanout.h"

int server_core_start(server *srv) {
    /* one queue consumer per fan-out thread */
    srv->queue = queue_local_new(65536, fanout_threads(srv));
    srv->registry = registry_local_new();
    srv->quota = quota_new_for_config(&srv->cfg);
    srv->recent_inbox = recent_inbox_new();
    if (!srv->queue || !srv->registry || !srv->quota || !srv->recent_inbox) return -1;
    srv->writer = writer_start(srv);
    srv->fanout = srv->writer ? fanout_start(srv) : NULL;
    return srv->fanout ? 0 : -1;
}

void server_core_stop(server *srv) {
    if (srv->writer) writer_stop(srv->writer);   /* finishes what was queued */
    if (srv->fanout) fanout_stop(srv->fanout);   /* fans out what the writer published */
    srv->writer = NULL;
    srv->fanout = NULL;
}

void server_core_free(server *srv) {
    if (srv->registry) registry_free(srv->registry);
    if (srv->queue) queue_free(srv->queue);
    if (srv->quota) quota_free(srv->quota);
    recent_inbox_free(srv->recent_inbox);
    srv->recent_inbox = NULL;
    srv->registry = NULL;
    srv->queue = NULL;
    srv->quota = NULL;
}
