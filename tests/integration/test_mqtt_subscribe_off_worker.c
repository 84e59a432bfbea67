/* test_mqtt_subscribe_off_worker.c -- the cursor read an MQTT persistent
 * session makes when it subscribes to its events does not hold the gateway
 * worker on Cassandra (src/gateway/mqtt_conn.c, gateway/store_reads.h).
 *
 * With one worker on Cassandra and the test hook
 * PARLEY_TEST_HOLD_CATCHUP_READS (the cursor read and every catch-up page
 * read wait while the hook's file exists): bob is offline while alice
 * sends him MESSAGES messages; the hold file is made; bob's device
 * connects over MQTT (3.1.1, persistent session: clean session 0) and
 * subscribes to its T/ev, whose cursor read is now held. What must hold:
 *   - bob gets his SUBACK, and the worker answers another connection: a
 *     raw WebSocket connection X (alice) gets its PushGetKey answered,
 *     while bob has been sent no PUBLISH;
 *   - once the file is gone, bob's session catches up: every message
 *     alice sent, as T/ev PUBLISHes, in seq order, once.
 *
 * Seen failing: with handle_subscribe reading the cursor on the worker
 * again (the store_reads branch made dead; the hook then holds the worker
 * itself), subscribe_does_not_hold_worker fails: the SUBACK waits in the
 * worker's output behind the held read (the bounded read gives up).
 *
 * A minimal MQTT client over a socket, written here with the codec's
 * encoders. Every wait is on observable state with a generous bound. */
#include <errno.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"
#include "hold_file.h"
#include "mqtt_client.h"
#include "net/mqtt_codec.h"

enum {
    MESSAGES = 20,
    IO_MS = 30000,          /* bound on each read: the worker answers at once when it is free */
};

#define NEED(x) CHECK((x), "%s", #x)
#define HOOK "PARLEY_TEST_HOLD_CATCHUP_READS"

static h_server S;
static int mqtt_port;
static h_dev *alice, *bob;
static h_raw X;
static mq B = {.fd = -1};   /* bob's MQTT session */
static uint64_t last_ts;    /* a password's TS must grow per device */
static uint64_t conv;
static uint64_t sent_seq[MESSAGES];
static hold_file hold;

/* bob's CONNECT (3.1.1, clean session 0, the password scheme) on a new
 * B: the CONNACK's return code, -1 none. */
static int mq_connect(const pc_identity *id) {
    uint8_t p[512];
    size_t n = mq_password_connect(id, id->secret_key, &last_ts, p, sizeof p);
    if (!n || mq_open(&B, mqtt_port, IO_MS) != 0 || mq_write(&B, p, n)) return -1;
    uint8_t first, body[256];
    size_t len;
    if (mq_next(&B, &first, body, sizeof body, &len, IO_MS) != 1 || first >> 4 != MQTT_CONNACK) return -1;
    mqtt_connack ca;
    if (mqtt_decode_connack(4, first, body, len, &ca) != MQTT_OK) return -1;
    return ca.reason;
}

static void subscribe_does_not_hold_worker(void) {
    NEED(hold_file_init(&hold, HOOK) == 0);   /* the server inherits it */
    NEED(cassandra_node_start("mqtt_sub_reads") == 0);
    mqtt_port = h_free_port();
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", mqtt_port);
    const char *flags[] = {"--store", "cassandra", "--cassandra", cassandra_node_hosts(), "--keyspace",
                           "mqtt_sub_reads", "--workers", "1", "--mqtt-listen", listen, NULL};
    NEED(h_server_start(&S, flags) == 0);
    NEED(h_direct_pair(&S, &alice, &bob, &conv) == 0);
    h_dev_disconnect(bob);
    for (int i = 0; i < MESSAGES; i++) {
        char text[32];
        snprintf(text, sizeof text, "offline %d", i);
        NEED((sent_seq[i] = h_send(alice, conv, text)) != 0);
    }
    h_raw_opts o = {.io_ms = IO_MS};
    NEED(h_raw_open_port(S.port, &o, &X) == 0);
    NEED(h_raw_sign_in(&X, &alice->id) == 0);

    NEED(hold_file_make(&hold) == 0);
    int rc = mq_connect(&bob->id);
    CHECK(rc == 0, "CONNACK %d", rc);
    char filter[64];
    snprintf(filter, sizeof filter, "p/%llu.%u/ev", (unsigned long long)bob->id.user_id, bob->id.device_id);
    const char *filters[] = {filter};
    uint8_t opts[] = {1};
    uint8_t p[256];
    size_t n = mqtt_encode_subscribe(p, sizeof p, 4, false, 1, filters, opts, 1);
    NEED(n > 0 && mq_write(&B, p, n) == 0);
    uint8_t first, body[512];
    size_t len;
    int got = mq_next(&B, &first, body, sizeof body, &len, IO_MS);
    CHECK(got == 1 && first >> 4 == MQTT_SUBACK, "no SUBACK while the cursor read was held (%d)", got);

    CHECK(h_raw_worker_answers(&X, 7), "X's PushGetKey unanswered while bob's cursor read was held: the worker waits on it");
    got = mq_next(&B, &first, body, sizeof body, &len, 200);
    CHECK(got == 0, "bob was sent a packet (type %d) while his cursor read was held", got == 1 ? first >> 4 : -1);
}

static void session_catches_up_after_release(void) {
    NEED(hold.held && B.fd >= 0);
    hold_file_release(&hold);
    static uint8_t body[MQ_BUF];
    size_t seen = 0;
    uint64_t last_user_seq = 0;
    for (int i = 0; i < 1000 && seen < MESSAGES; i++) {
        uint8_t first;
        size_t len;
        int got = mq_next(&B, &first, body, sizeof body, &len, IO_MS);
        CHECK(got == 1, "bob has %zu of %d messages (read %d)", seen, MESSAGES, got);
        if (first >> 4 != MQTT_PUBLISH) continue;
        mqtt_publish pub;
        NEED(mqtt_decode_publish(4, first, body, len, &pub) == MQTT_OK);
        Parley__V1__Frame *ev = parley__v1__frame__unpack(NULL, pub.payload.len, pub.payload.p);
        NEED(ev != NULL);
        int is_event = ev->body_case == PARLEY__V1__FRAME__BODY_EVENT && ev->event->message;
        uint64_t user_seq = is_event ? ev->event->user_seq : 0;
        int mine = is_event && ev->event->message->conversation_id == conv &&
                   ev->event->message->type != PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP;
        uint64_t seq = mine ? ev->event->message->seq : 0;
        parley__v1__frame__free_unpacked(ev, NULL);
        if (!is_event) continue;
        CHECK(user_seq > last_user_seq, "user_seq %llu after %llu", (unsigned long long)user_seq,
              (unsigned long long)last_user_seq);
        last_user_seq = user_seq;
        if (!mine) continue;
        CHECK(seq == sent_seq[seen], "message %zu: seq %llu, want %llu", seen, (unsigned long long)seq,
              (unsigned long long)sent_seq[seen]);
        seen++;
    }
    CHECK(seen == MESSAGES, "bob has %zu of %d messages", seen, MESSAGES);
}

int main(void) {
    unsetenv("PARLEY_TEST_STORE");   /* its own server on Cassandra, with the hook */
    RUN(subscribe_does_not_hold_worker);
    RUN(session_catches_up_after_release);
    hold_file_release(&hold);
    mq_close(&B);
    h_raw_close(&X);
    if (alice) h_dev_free(alice);
    if (bob) h_dev_free(bob);
    h_server_destroy(&S);
    cassandra_node_stop();
    hold_file_destroy(&hold);
    CHECK_EXIT();
}
