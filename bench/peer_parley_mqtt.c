/* peer_parley_mqtt.c -- the shapes of bench-peer-mosquitto, against parley's
 * MQTT listener (README "MQTT"), on the same client stack: libmosquitto's
 * non-blocking interface on one epoll loop, QoS 1, and the same send loop
 * (peer_common.c). So parley-mqtt and mosquitto differ in the server only.
 *
 * Before the timed part, users are registered over WebSocket with libparley
 * (--ws-port: parley's --listen) on a few threads, the conversations made
 * (a direct one per pair, opened by both so it is no message request; one
 * group of --size), and the WebSocket connections closed. Then each user's
 * device connects over MQTT 3.1.1 with the password scheme (client id
 * "USER.DEVICE", password "TS.SIG"), a persistent session, and subscribes to
 * p/USER.DEVICE/ev and /res.
 *
 * A send is a Frame{send_message} PUBLISHed at QoS 1 to the device's /req.
 * "Ack" is the Response on /res: Sent, after parley made the message durable
 * (the server's --fsync) -- not the gateway's PUBACK. A delivery is an Event
 * PUBLISH (QoS 1, PUBACKed by libmosquitto: the device's Ack) on another
 * member's /ev; the sender's own copy that parley sends back to its device
 * is not counted. An event whose user_seq is not above the last one the
 * device saw would be a duplicate shown to the application: counted, and
 * the run is then invalid.
 *
 *   bench-peer-parley-mqtt direct --port MQTT --ws-port WS --pairs N --window W|--rate R --seconds S
 *   bench-peer-parley-mqtt group  --port MQTT --ws-port WS --size 250 --senders K|all --window W --seconds S
 *   bench-peer-parley-mqtt idle   --port MQTT --ws-port WS --n N --pid PARLEY_PID
 * Prints one JSON object on stdout (the shape of bench-peer-mosquitto's).
 * idle measures the server's RSS after the users are registered and before
 * the MQTT connections, and after them: the delta is the connections'. */
#include <errno.h>
#include <inttypes.h>
#include <mosquitto.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "parley.h"
#include "parley_mqtt.h"
#include "peer_common.h"
#include "peer_mosq.h"
#include "proto/parley.pb-c.h"

enum {
    RING = 1024,            /* send times by request id; in-flight is kept below this */
    SETUP_THREADS = 16,     /* registrations in parallel: they wait on the group commit */
    TOPIC_MAX = 48,
    GROUP_MAX = 1000,       /* --size bound (members of one CreateGroup) */
};

typedef struct client {
    mosq_conn mc;           /* first: the loop's part (peer_mosq.h) */
    pc_identity id;
    uint64_t conv;          /* publishes to (0: only receives) */
    uint64_t next_request, last_user_seq;
    char t_req[TOPIC_MAX], t_ev[TOPIC_MAX], t_res[TOPIC_MAX];
    uint64_t *sent_at;      /* RING entries, senders only */
} client;

static peer_tally g_t;
static uint64_t g_duplicates, g_refused;
static peer_args g_a;
static bool g_group;
static int g_ws_port;
static client *g_cs;
static long g_ncs;
static uint64_t g_next_misc;

/* ----------------------------------------------------- setup over WebSocket */

typedef struct setup_job {
    client *cs;
    long from, to;          /* clients [from, to) */
    int phase;              /* 0 register, 1 open the pairs' conversations */
    char prefix[24];
    pc_client **conns;      /* by client index, kept open between phases */
    bool keep;              /* keep the connection for phase 1 */
    long failures;
} setup_job;

static pc_client *ws_client(void) {
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d", g_ws_port);
    pc_options o = {.server_url = url, .connect_timeout_ms = 10000, .request_timeout_ms = 30000,
                    .max_reconnects = 0};
    pc_client *c = pc_new(&o);
    if (c && pc_connect(c) < 0) {
        pc_free(c);
        return NULL;
    }
    return c;
}

static void *setup_run(void *arg) {
    setup_job *j = arg;
    for (long i = j->from; i < j->to; i++) {
        client *c = &j->cs[i];
        if (j->phase == 0) {
            pc_client *p = ws_client();
            char name[64];   /* at most 17 + 10 characters: within the server's 32 */
            snprintf(name, sizeof name, "%s%u", j->prefix, (unsigned)i);
            pc_identity_generate(&c->id);
            if (!p || pc_register_user(p, name, &c->id) < 0) {
                if (j->failures++ < 3)
                    fprintf(stderr, "peer-parley-mqtt: register %s: %s\n", name, p ? pc_error(p) : "no connection");
                if (p) pc_free(p);
                c->mc.dead = true;
                continue;
            }
            if (j->keep) {
                j->conns[i] = p;
            } else {
                pc_close(p);
                pc_free(p);
            }
        } else if (i % 2 == 0 && i + 1 < g_ncs) {   /* a pair: both open it, so neither holds a request */
            client *peer = &j->cs[i + 1];
            pc_client *a = j->conns[i], *b = j->conns[i + 1];
            uint64_t conv = 0, again = 0;
            if (!a || !b || pc_open_direct(a, peer->id.user_id, &conv) < 0 ||
                pc_open_direct(b, c->id.user_id, &again) < 0 || conv != again) {
                if (j->failures++ < 3) fprintf(stderr, "peer-parley-mqtt: open direct %ld\n", i);
                c->mc.dead = peer->mc.dead = true;
                continue;
            }
            c->conv = conv;
        }
    }
    return NULL;
}

/* Runs phase over the clients on SETUP_THREADS threads. Returns the failures. */
static long setup_phase(client *cs, long n, int phase, const char *prefix, pc_client **conns, bool keep) {
    setup_job jobs[SETUP_THREADS];
    pthread_t th[SETUP_THREADS];
    long per = (n + SETUP_THREADS - 1) / SETUP_THREADS;
    if (per % 2) per++;   /* a pair stays in one job */
    int used = 0;
    for (int t = 0; t < SETUP_THREADS && (long)t * per < n; t++, used++) {
        jobs[t] = (setup_job){.cs = cs, .from = (long)t * per, .to = (long)(t + 1) * per > n ? n : (long)(t + 1) * per,
                              .phase = phase, .conns = conns, .keep = keep};
        snprintf(jobs[t].prefix, sizeof jobs[t].prefix, "%s", prefix);
        pthread_create(&th[t], NULL, setup_run, &jobs[t]);
    }
    long failures = 0;
    for (int t = 0; t < used; t++) {
        pthread_join(th[t], NULL);
        failures += jobs[t].failures;
    }
    return failures;
}

static void close_all_ws(pc_client **conns, long n) {
    for (long i = 0; i < n; i++)
        if (conns[i]) {
            pc_close(conns[i]);
            pc_free(conns[i]);
            conns[i] = NULL;
        }
}

/* Registers n users (and, for direct and group, their conversations). 0 or -1. */
static int setup_users(client *cs, long n, bool pairs, bool group) {
    char prefix[24];
    snprintf(prefix, sizeof prefix, "pm%x.%lx.", (unsigned)getpid(), (unsigned long)(peer_now_ns() & 0xfffff));
    pc_client **conns = calloc((size_t)n, sizeof *conns);
    bool keep = pairs || group;
    uint64_t t0 = peer_now_ns();
    long failures = setup_phase(cs, n, 0, prefix, conns, keep);
    if (!failures && pairs) failures = setup_phase(cs, n, 1, prefix, conns, keep);
    if (!failures && group) {
        if (n > GROUP_MAX) n = GROUP_MAX;
        uint64_t *members = calloc((size_t)n, sizeof *members);
        for (long i = 1; i < n; i++) members[i - 1] = cs[i].id.user_id;
        uint64_t conv = 0;
        if (pc_create_group(conns[0], "bench", members, (size_t)n - 1, &conv) < 0) {
            fprintf(stderr, "peer-parley-mqtt: create group: %s\n", pc_error(conns[0]));
            failures++;
        }
        for (long i = 0; i < n; i++) cs[i].conv = conv;
        free(members);
    }
    close_all_ws(conns, n);
    free(conns);
    fprintf(stderr, "peer-parley-mqtt: %ld users registered over WebSocket in %.1f s\n", n,
            (double)(peer_now_ns() - t0) / 1e9);
    return failures ? -1 : 0;
}

/* ------------------------------------------------------------- MQTT loop */

static void on_connect(struct mosquitto *m, void *obj, int rc) {
    client *c = obj;
    if (rc != 0) {
        g_refused++;
        mosq_mark_dead(&c->mc, MOSQ_ERR_CONN_REFUSED, mosquitto_connack_string(rc));
        return;
    }
    char *subs[2] = {c->t_ev, c->t_res};
    mosquitto_subscribe_multiple(m, NULL, 2, subs, 1, 0, NULL);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted) {
    (void)m; (void)mid;
    client *c = obj;
    for (int i = 0; i < n; i++)
        if (granted[i] > 1) {
            mosq_mark_dead(&c->mc, MOSQ_ERR_PROTOCOL, "subscribe refused");
            return;
        }
    if (!c->mc.ready) {
        c->mc.ready = true;
        g_t.ready++;
    }
}

/* the body: "s<8 hex: sender index> t<16 hex: send time ns>" padded with 'x' */
enum { BODY_HEAD = 1 + 8 + 2 + 16 };

static bool body_parse(const ProtobufCBinaryData *b, uint32_t *sender, uint64_t *ts) {
    if (b->len < BODY_HEAD || b->data[0] != 's' || b->data[9] != ' ' || b->data[10] != 't') return false;
    char hex[17];
    memcpy(hex, b->data + 1, 8);
    hex[8] = 0;
    *sender = (uint32_t)strtoul(hex, NULL, 16);
    memcpy(hex, b->data + 11, 16);
    hex[16] = 0;
    *ts = strtoull(hex, NULL, 16);
    return true;
}

static bool topic_is(const struct mosquitto_message *msg, const char *t) { return strcmp(msg->topic, t) == 0; }

static void on_response(client *c, const Parley__V1__Response *r, uint64_t request_id) {
    if (r->status != PARLEY__V1__STATUS__OK || r->result_case != PARLEY__V1__RESPONSE__RESULT_SENT) {
        g_t.errors++;
        if (g_t.errors <= 5)
            fprintf(stderr, "peer-parley-mqtt: client %u: send refused: %d %s\n", c->mc.index, r->status,
                    r->error ? r->error : "");
    } else {
        g_t.acked++;
        if (c->sent_at) hist_record(&g_t.ack, peer_now_ns() - c->sent_at[request_id % RING]);
    }
    if (c->mc.inflight) c->mc.inflight--;
}

static void on_event(client *c, const Parley__V1__Event *e) {
    if (e->user_seq <= c->last_user_seq) {   /* would be shown twice: the run is invalid */
        g_duplicates++;
        return;
    }
    c->last_user_seq = e->user_seq;
    const Parley__V1__Message *msg = e->message;
    uint32_t sender;
    uint64_t ts;
    if (!msg || msg->type != PARLEY__V1__MESSAGE_TYPE__TEXT || !body_parse(&msg->body, &sender, &ts)) return;
    if (sender == c->mc.index) return;   /* its own message, back to its device: not a delivery to another member */
    g_t.delivered++;
    uint64_t now = peer_now_ns();
    if (now > ts) hist_record(&g_t.deliv, now - ts);
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
    (void)m;
    client *c = obj;
    Parley__V1__Frame *f = parley__v1__frame__unpack(NULL, (size_t)msg->payloadlen, msg->payload);
    if (!f) {
        g_t.errors++;
        return;
    }
    if (f->body_case == PARLEY__V1__FRAME__BODY_RESPONSE && topic_is(msg, c->t_res))
        on_response(c, f->response, f->request_id);
    else if (f->body_case == PARLEY__V1__FRAME__BODY_EVENT && topic_is(msg, c->t_ev))
        on_event(c, f->event);
    parley__v1__frame__free_unpacked(f, NULL);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc) {
    (void)m;
    client *c = obj;
    if (rc != 0) mosq_mark_dead(&c->mc, rc, "disconnected");
}

static void connect_one(client *c, int port, uint32_t k) {
    char id[PC_MQTT_CLIENT_ID_MAX], pw[PC_MQTT_PASSWORD_MAX];
    c->mc.fd = -1;
    pc_mqtt_client_id(&c->id, id, sizeof id);
    pc_mqtt_password(&c->id, pc_mqtt_now_ms(), pw, sizeof pw);
    snprintf(c->t_req, sizeof c->t_req, "p/%s/req", id);
    snprintf(c->t_ev, sizeof c->t_ev, "p/%s/ev", id);
    snprintf(c->t_res, sizeof c->t_res, "p/%s/res", id);
    c->mc.m = mosq_new_quiet(id, false, c);   /* persistent session: sync starts at SUBSCRIBE */
    if (!c->mc.m) {
        fprintf(stderr, "peer-parley-mqtt: mosquitto_new failed\n");
        exit(1);
    }
    mosquitto_int_option(c->mc.m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_max_inflight_messages_set(c->mc.m, 0);
    mosquitto_username_pw_set(c->mc.m, id, pw);
    mosquitto_connect_callback_set(c->mc.m, on_connect);
    mosquitto_subscribe_callback_set(c->mc.m, on_subscribe);
    mosquitto_message_callback_set(c->mc.m, on_message);
    mosquitto_disconnect_callback_set(c->mc.m, on_disconnect);
    mosq_connect_from(&c->mc, port, k);
}

static void publish(client *c, uint64_t ts) {
    char body[4096];
    memset(body, 'x', (size_t)g_a.body);
    char head[BODY_HEAD + 1];
    snprintf(head, sizeof head, "s%08x t%016" PRIx64, c->mc.index, ts);
    memcpy(body, head, BODY_HEAD);
    uint64_t rid = ++c->next_request;
    char cmid[32];
    int cmid_len = snprintf(cmid, sizeof cmid, "b%u.%" PRIu64, c->mc.index, rid);
    Parley__V1__SendMessage sm = PARLEY__V1__SEND_MESSAGE__INIT;
    sm.conversation_id = c->conv;
    sm.client_msg_id = (ProtobufCBinaryData){.len = (size_t)cmid_len, .data = (uint8_t *)cmid};
    sm.type = PARLEY__V1__MESSAGE_TYPE__TEXT;
    sm.body = (ProtobufCBinaryData){.len = (size_t)g_a.body, .data = (uint8_t *)body};
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = rid;
    f.body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f.send_message = &sm;
    uint8_t out[4096 + 128];
    size_t len = parley__v1__frame__pack(&f, out);
    uint64_t t = peer_now_ns();
    int rc = mosquitto_publish(c->mc.m, NULL, c->t_req, (int)len, out, 1, false);
    if (rc != MOSQ_ERR_SUCCESS) {
        mosq_mark_dead(&c->mc, rc, "publish");
        return;
    }
    c->sent_at[rid % RING] = t;
    c->mc.inflight++;
    g_t.sent++;
    mosq_set_out(&c->mc, mosquitto_want_write(c->mc.m));
}

static void print_json(const char *shape, double secs, long n_senders) {
    printf("{\"system\": \"parley-mqtt\", \"scenario\": \"%s\", \"qos\": 1, \"durability\": \"stored before the "
           "Sent response (parley's RocksDB store, its --fsync); events QoS 1, PUBACK = the device's Ack\", "
           "\"seconds\": %.3f, \"senders\": %ld, \"duplicates\": %llu, ",
           shape, secs, n_senders, (unsigned long long)g_duplicates);
    peer_print_rates(&g_t, secs, g_duplicates == 0);
    printf(", \"errors\": %llu}\n", (unsigned long long)g_t.errors);
}

static bool room(void *p, uint32_t cap) {
    client *c = p;
    return !c->mc.dead && c->mc.inflight < cap;
}
static void send_one(void *p, uint64_t due) { publish(p, due); }
static void turn(uint64_t now, int timeout_ms) {
    mosq_poll_once(timeout_ms);
    if (now > g_next_misc) {
        mosq_misc_all(g_cs, g_ncs, sizeof *g_cs);
        g_next_misc = now + 1000000000ull;
    }
}

static void connect_all(client *cs, long n, int port) {
    uint64_t end = peer_now_ns() + 60000000000ull;
    long next = 0;
    while ((g_t.ready + g_t.errors < (uint64_t)n) && peer_now_ns() < end) {
        while (next < n && mosq_loop_pending() - g_t.ready - g_t.errors < 256) {
            if (cs[next].mc.dead) {   /* its registration failed */
                g_t.errors++;
            } else {
                connect_one(&cs[next], port, (uint32_t)next);
            }
            next++;
        }
        mosq_poll_once(10);
    }
}

static int ws_port_arg(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--ws-port") == 0) return atoi(argv[i + 1]);
    return 0;
}

int main(int argc, char **argv) {
    if (!peer_parse_args(&g_a, argc, argv, "bench-peer-parley-mqtt", 1883, BODY_HEAD)) return 2;
    peer_clamp_counts(&g_a);
    if (g_a.window > RING - 24) g_a.window = RING - 24;
    g_ws_port = ws_port_arg(argc, argv);
    if (g_ws_port <= 0) {
        fprintf(stderr, "bench-peer-parley-mqtt: --ws-port (parley's --listen port) is needed\n");
        return 2;
    }
    const char *shape = g_a.shape;
    peer_tally_init(&g_t);
    mosq_loop_init("peer-parley-mqtt", &g_t);

    if (!strcmp(shape, "idle")) {
        long n = g_a.n;
        peer_raise_nofile("peer-parley-mqtt", n);
        client *cs = calloc((size_t)n, sizeof *cs);
        for (long i = 0; i < n; i++) cs[i].mc.index = (uint32_t)i;
        g_cs = cs;
        g_ncs = n;
        if (setup_users(cs, n, false, false) < 0) fprintf(stderr, "peer-parley-mqtt: some registrations failed\n");
        uint64_t settle = peer_now_ns() + 2000000000ull;   /* the WebSocket closes land */
        while (peer_now_ns() < settle) mosq_poll_once(100);
        long before = g_a.pid ? peer_status_kb(g_a.pid, "VmRSS") : -1;
        uint64_t t0 = peer_now_ns();
        connect_all(cs, n, g_a.port);
        double connect_s = (double)(peer_now_ns() - t0) / 1e9;
        settle = peer_now_ns() + 3000000000ull;
        while (peer_now_ns() < settle) mosq_poll_once(100);
        mosq_misc_all(cs, n, sizeof *cs);
        long after = g_a.pid ? peer_status_kb(g_a.pid, "VmRSS") : -1;
        peer_print_held("parley-mqtt", g_t.ready, connect_s, before, after, g_t.errors);
        fflush(stdout);
        mosq_reset_all(cs, n, sizeof *cs);
        return 0;
    }

    g_group = !strcmp(shape, "group");
    if (g_group && g_a.size > GROUP_MAX) g_a.size = GROUP_MAX;
    g_t.receivers = g_group ? (uint64_t)g_a.size - 1 : 1;
    long nclients = g_group ? g_a.size : g_a.pairs * 2;
    peer_raise_nofile("peer-parley-mqtt", nclients);
    client *cs = calloc((size_t)nclients, sizeof *cs);
    for (long i = 0; i < nclients; i++) cs[i].mc.index = (uint32_t)i;
    g_cs = cs;
    g_ncs = nclients;
    if (setup_users(cs, nclients, !g_group, g_group) < 0) {
        fprintf(stderr, "peer-parley-mqtt: setup failed\n");
        return 1;
    }
    connect_all(cs, nclients, g_a.port);
    if (g_t.ready < (uint64_t)nclients)
        fprintf(stderr, "peer-parley-mqtt: only %llu of %ld clients ready\n", (unsigned long long)g_t.ready, nclients);
    /* the catch-up of each new session (membership events) lands first */
    uint64_t settle = peer_now_ns() + 2000000000ull;
    while (peer_now_ns() < settle) mosq_poll_once(50);
    long nsend = 0;
    void **sendv = calloc((size_t)nclients, sizeof *sendv);
    for (long i = 0; i < nclients; i++) {
        bool s = g_group ? (g_a.senders < 0 || i < g_a.senders) : i % 2 == 0;
        if (s && !cs[i].mc.dead && cs[i].conv) {
            sendv[nsend++] = &cs[i];
            cs[i].sent_at = calloc(RING, sizeof(uint64_t));
        }
    }
    if (nsend == 0) {
        fprintf(stderr, "peer-parley-mqtt: no sender connected\n");
        return 1;
    }
    g_next_misc = peer_now_ns() + 1000000000ull;
    double secs = peer_send_for(sendv, nsend, &g_a, RING - 24, &(peer_sender){room, send_one, turn});
    peer_drain(&g_t, mosq_poll_once);
    print_json(g_group ? "group" : "direct", secs, nsend);
    fflush(stdout);
    mosq_reset_all(cs, nclients, sizeof *cs);
    return 0;
}
