/* fuzz_mqtt.c -- libFuzzer target for the MQTT codec. The first input byte
 * picks the protocol level (4 or 5); the rest is read as a stream of packets
 * the way the gateway reads them (fixed header, then a body of the declared
 * length, bounded by a packet limit), and each body goes through the decoder
 * of its type. Checked: no crash or read outside the input (ASan), every
 * decoded string and byte field lies inside its packet, every string is
 * valid MQTT UTF-8, refusals are reason codes >= 0x80, and whatever decodes
 * as a SUBSCRIBE iterates over exactly the filters it counted; a client id
 * the gateway takes as USER.DEVICE prints back to the same bytes (one
 * device, one name: its topics cannot be reached under another spelling). */
#include "gateway/mqtt_auth.h"
#include "net/mqtt_codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_PACKET = 1 << 16 };

static void inside(const mqtt_bytes *b, const uint8_t *body, size_t len) {
    if (b->p && (b->p < body || b->p + b->len > body + len)) abort();
}

static void utf8(const mqtt_bytes *b) {
    if (b->p && !mqtt_utf8_valid(b->p, b->len)) abort();
}

static void refusal(int r) {
    if (r != MQTT_OK && r < 0x80) abort();
}

static void one_packet(uint8_t level, uint8_t first, const uint8_t *body, size_t len) {
    int r;
    switch (first >> 4) {
    case MQTT_CONNECT: {
        mqtt_connect c;
        r = mqtt_decode_connect(first, body, len, &c);
        refusal(r);
        if (r == MQTT_OK) {
            inside(&c.client_id, body, len);
            utf8(&c.client_id);
            inside(&c.username, body, len);
            inside(&c.password, body, len);
            inside(&c.props.auth_method, body, len);
            inside(&c.props.auth_data, body, len);
            utf8(&c.props.auth_method);
            uint64_t user = 0;
            uint32_t device = 0;
            if (mqtt_parse_client_id(c.client_id.p, c.client_id.len, &user, &device)) {
                char back[48];
                int n = snprintf(back, sizeof back, "%llu.%u", (unsigned long long)user, device);
                if (n < 0 || (size_t)n != c.client_id.len || memcmp(back, c.client_id.p, (size_t)n) != 0) abort();
            }
        }
        break;
    }
    case MQTT_PUBLISH: {
        mqtt_publish p;
        r = mqtt_decode_publish(level, first, body, len, &p);
        refusal(r);
        if (r == MQTT_OK) {
            inside(&p.topic, body, len);
            inside(&p.payload, body, len);
            utf8(&p.topic);
            if (p.qos == 3 || (p.qos && !p.packet_id)) abort();
        }
        break;
    }
    case MQTT_PUBACK: case MQTT_PUBREC: case MQTT_PUBREL: case MQTT_PUBCOMP: {
        mqtt_ack a;
        refusal(mqtt_decode_ack(level, first, body, len, &a));
        break;
    }
    case MQTT_SUBSCRIBE: case MQTT_UNSUBSCRIBE: {
        mqtt_subscribe s;
        r = (first >> 4) == MQTT_SUBSCRIBE ? mqtt_decode_subscribe(level, first, body, len, &s)
                                           : mqtt_decode_unsubscribe(level, first, body, len, &s);
        refusal(r);
        if (r == MQTT_OK) {
            size_t pos = 0;
            uint32_t n = 0;
            mqtt_bytes f;
            uint8_t o;
            while (mqtt_next_filter(&s, &pos, &f, &o)) {
                inside(&f, body, len);
                utf8(&f);
                n++;
            }
            if (n != s.n_filters) abort();
        }
        break;
    }
    case MQTT_DISCONNECT: {
        mqtt_reason_packet d;
        refusal(mqtt_decode_disconnect(level, first, body, len, &d));
        break;
    }
    case MQTT_AUTH: {
        mqtt_reason_packet a;
        r = mqtt_decode_auth(first, body, len, &a);
        refusal(r);
        if (r == MQTT_OK) inside(&a.props.auth_data, body, len);
        break;
    }
    case MQTT_CONNACK: {
        mqtt_connack c;
        refusal(mqtt_decode_connack(level, first, body, len, &c));
        break;
    }
    case MQTT_SUBACK: case MQTT_UNSUBACK: {
        mqtt_suback s;
        r = mqtt_decode_suback(level, first, body, len, &s);
        refusal(r);
        if (r == MQTT_OK) inside(&s.codes, body, len);
        break;
    }
    default:
        refusal(mqtt_decode_empty(first, len));
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t level = (data[0] & 1) ? 5 : 4;
    data++;
    size--;
    size_t pos = 0;
    for (int packets = 0; packets < 64 && pos < size; packets++) {
        uint8_t first = 0;
        uint32_t rem = 0;
        size_t hl = 0;
        int r = mqtt_fixed_header(data + pos, size - pos, &first, &rem, &hl);
        if (r == MQTT_NEED_MORE) break;
        if (r != MQTT_OK) {
            refusal(r);
            break;
        }
        if (hl < 2 || hl > MQTT_MAX_FIXED_HEADER || rem > MQTT_MAX_REMAINING) abort();
        if (rem > MAX_PACKET || rem > size - pos - hl) break;   /* too large, or waits for more */
        /* the body in its own allocation, so ASan sees any read past it */
        uint8_t *body = malloc(rem ? rem : 1);
        if (!body) return 0;
        memcpy(body, data + pos + hl, rem);
        one_packet(level, first, body, rem);
        free(body);
        pos += hl + rem;
    }
    return 0;
}
