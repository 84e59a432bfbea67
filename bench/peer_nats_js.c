/* peer_nats_js.c -- JetStream set-up for bench-peer-nats (see peer_nats_js.h). */
#include "peer_nats_js.h"

#include <nats/nats.h>
#include <stdio.h>

static natsConnection *g_nc;
static jsCtx *g_js;
static char g_stream[64];

static bool check(natsStatus s, jsErrCode jerr, const char *what) {
    if (s == NATS_OK) return true;
    fprintf(stderr, "peer-nats: %s: %s (JetStream error %d) %s\n", what, natsStatus_GetText(s), (int)jerr,
            nats_GetLastError(NULL));
    return false;
}

bool pjs_open(int port, const char *name, const char *subjects, long max_msgs) {
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
    snprintf(g_stream, sizeof g_stream, "%s", name);
    if (!check(natsConnection_ConnectTo(&g_nc, url), 0, "JetStream admin connect")) return false;
    if (!check(natsConnection_JetStream(&g_js, g_nc, NULL), 0, "JetStream context")) return false;
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = name;
    sc.Subjects = &subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;   /* the ack means the message is in the stream's file */
    sc.Replicas = 1;
    sc.MaxMsgs = max_msgs;
    sc.Discard = js_DiscardOld;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(&si, g_js, &sc, NULL, &jerr);
    if (si) jsStreamInfo_Destroy(si);
    return check(s, jerr, "add stream");
}

bool pjs_add_push_consumer(const char *filter, const char *deliver) {
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.DeliverSubject = deliver;
    cc.FilterSubject = filter;
    cc.DeliverPolicy = js_DeliverAll;   /* a fresh stream: from its first message */
    cc.AckPolicy = js_AckNone;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddConsumer(&ci, g_js, g_stream, &cc, NULL, &jerr);
    if (ci) jsConsumerInfo_Destroy(ci);
    return check(s, jerr, "add consumer");
}

void pjs_close(void) {
    if (g_js) jsCtx_Destroy(g_js);
    if (g_nc) natsConnection_Destroy(g_nc);
    g_js = NULL;
    g_nc = NULL;
}
