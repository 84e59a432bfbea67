#!/usr/bin/python3
"""test_paho_v5.py -- Eclipse Paho (Debian's python3-paho-mqtt 1.6, MQTT 5)
drives parley's MQTT listener (README "MQTT"):

  paho_password_send_and_receive: connects with the password scheme
    (`parley-cli mqtt-password`), subscribes to p/USER.DEVICE/ev and /res
    (granted QoS 1), receives as Frame{event} what a WebSocket user sent,
    publishes a SendMessage to /req and gets Sent on /res, and the WebSocket
    user's `parley-cli sync` shows it.
  paho_reconnect_catches_up: the persistent session (clean start off) is
    left with everything PUBACKed (the sender's `receipts` says delivered);
    two messages are sent while it is away; the reconnect gets exactly those
    two, in order, and none of the earlier ones.
  paho_subscribe_elsewhere_refused: SUBSCRIBE to another device's topic,
    `#`, `p/#`, `p/+/ev` and `+/+/+` gets reason 0x87 for each; a message to
    that other device arrives there, and on this client nothing arrives but
    its own marker message, sent after it.
  raw_enhanced_auth_parley_ed25519: paho 1.6 cannot take part in MQTT 5
    enhanced authentication (its packet handler has no AUTH: the server's
    AUTH is an "unrecognised command" to it), so a raw-socket client does:
    CONNECT with Authentication Method parley-ed25519, AUTH 0x18 with the
    nonce, the answer signed with the device key (python3-nacl), CONNACK
    0x00 and a granted SUBSCRIBE; a signature over another nonce gets CONNACK
    0x87, an unknown method 0x8C.

Every wait is bounded; the server is stopped by its PID on every path.
"""
import os
import socket
import struct
import sys
import threading

import nacl.signing
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties  # noqa: F401  (paho's MQTT 5 support)
from paho.mqtt.subscribeoptions import SubscribeOptions

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mqtt_env import (WAIT_S, CheckFailed, check, exit_with_cases, parse_frame, pb, run_case,  # noqa: E402
                      send_frame, start_with_devices, wait_until)

S = None
ALICE = BOB = DAVE = None
CONV = 0


class Paho:
    """A paho MQTT 5 client of dev, its network loop on paho's thread."""

    def __init__(self, dev):
        self.dev = dev
        self.lock = threading.Lock()
        self.connack = None
        self.session_present = None
        self.subacks = []        # lists of reason code values
        self.messages = []       # (topic, Frame)
        self.disconnected = False
        self.c = mqtt.Client(client_id=dev.client_id, protocol=mqtt.MQTTv5)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        self.c.on_disconnect = self._on_disconnect

    def _on_connect(self, c, ud, flags, rc, props):
        self.session_present = flags.get("session present")
        self.connack = rc.value

    def _on_subscribe(self, c, ud, mid, rcs, props):
        with self.lock:
            self.subacks.append([r.value for r in rcs])

    def _on_message(self, c, ud, msg):
        with self.lock:
            self.messages.append((msg.topic, parse_frame(msg.payload)))

    def _on_disconnect(self, c, ud, rc, props=None):
        self.disconnected = True

    def connect(self):
        cid, pw = self.dev.mqtt_password()
        self.c.username_pw_set(cid, pw)
        self.c.connect("127.0.0.1", S.mqtt_port, keepalive=60, clean_start=False)
        self.c.loop_start()
        check(wait_until(lambda: self.connack is not None or self.disconnected), "no CONNACK")
        check(self.connack == 0, "CONNACK reason %s" % self.connack)

    def subscribe(self, filters):
        n = len(self.subacks)
        self.c.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])
        check(wait_until(lambda: len(self.subacks) > n or self.disconnected), "no SUBACK")
        return self.subacks[n]

    def publish_req(self, payload):
        info = self.c.publish(self.dev.topic + "/req", payload, qos=1)
        info.wait_for_publish(timeout=WAIT_S)
        check(info.is_published(), "PUBLISH to /req not PUBACKed")

    def events(self):
        with self.lock:
            return [f.event for t, f in self.messages if t == self.dev.topic + "/ev" and f.WhichOneof("body") == "event"]

    def responses(self):
        with self.lock:
            return [f for t, f in self.messages if t == self.dev.topic + "/res" and f.WhichOneof("body") == "response"]

    def stop(self):
        if self.c.is_connected():
            self.c.disconnect()
        self.c.loop_stop()


def texts_of(events, conv):
    return [e.message.body.decode() for e in events
            if e.message.conversation_id == conv and e.message.type == pb().TEXT]


def delivered_seq(sender, conv, user_id):
    """user_id's delivered seq in conv, from sender's `parley-cli receipts`."""
    import json
    for line in sender.cli("receipts", str(conv)).splitlines():
        d = json.loads(line)
        if d.get("user") == user_id:
            return d.get("delivered_seq", 0)
    return 0


def paho_password_send_and_receive():
    p = Paho(BOB)
    try:
        p.connect()
        check(p.subscribe([BOB.topic + "/ev", BOB.topic + "/res"]) == [1, 1], "granted %s" % p.subacks)
        seq = ALICE.send(CONV, "to paho")
        check(wait_until(lambda: "to paho" in texts_of(p.events(), CONV)), "the event did not arrive")
        ev = [e for e in p.events() if e.message.body == b"to paho"]
        check(len(ev) == 1 and ev[0].message.seq == seq and ev[0].message.sender_user_id == ALICE.user_id,
              "not the message sent: %s" % ev)
        p.publish_req(send_frame(CONV, "from paho", request_id=5))
        check(wait_until(lambda: len(p.responses()) > 0), "no Response on /res")
        r = p.responses()[0]
        check(r.request_id == 5 and r.response.status == pb().OK and r.response.sent.seq > 0,
              "not Sent OK: %s" % r)
        seen = []
        check(wait_until(lambda: seen.extend(ALICE.sync_texts(wait_s=1)) or "from paho" in seen, step=0),
              "the WebSocket user did not get it (saw %s)" % seen)
    finally:
        p.stop()


def paho_reconnect_catches_up():
    p = Paho(BOB)
    try:
        p.connect()
        p.subscribe([BOB.topic + "/ev", BOB.topic + "/res"])
        last = ALICE.send(CONV, "before the break")
        check(wait_until(lambda: "before the break" in texts_of(p.events(), CONV)), "first message did not arrive")
        # PUBACKed and the cursor committed: the sender sees it delivered
        check(wait_until(lambda: delivered_seq(ALICE, CONV, BOB.user_id) >= last, step=0.2),
              "no delivered receipt for the PUBACKed message")
        before = p.events()
    finally:
        p.stop()
    seqs = [ALICE.send(CONV, t) for t in ("while away 1", "while away 2")]
    p = Paho(BOB)
    try:
        p.connect()
        check(p.session_present, "CONNACK without Session Present for a persistent session with a cursor")
        p.subscribe([BOB.topic + "/ev"])
        check(wait_until(lambda: "while away 2" in texts_of(p.events(), CONV)), "did not catch up")
        got = texts_of(p.events(), CONV)
        check(got == ["while away 1", "while away 2"], "caught up with %s" % got)
        check([e.message.seq for e in p.events() if e.message.type == pb().TEXT] == seqs, "seqs")
        old = {e.user_seq for e in before}
        check(not [e for e in p.events() if e.user_seq in old], "PUBACKed events came again")
    finally:
        p.stop()


def paho_subscribe_elsewhere_refused():
    p = Paho(BOB)
    try:
        p.connect()
        refused = [DAVE.topic + "/ev", "#", "p/#", "p/+/ev", "+/+/+"]
        codes = p.subscribe(refused)
        check(codes == [0x87] * len(refused), "reason codes %s" % codes)
        check(p.subscribe([BOB.topic + "/#"]) == [1], "own T/# not granted")
        dconv = ALICE.direct(DAVE)
        ALICE.send(dconv, "for dave only")
        seen = []
        check(wait_until(lambda: seen.extend(DAVE.sync_texts(wait_s=1)) or "for dave only" in seen, step=0),
              "dave did not get his message")
        ALICE.send(CONV, "marker for bob")
        check(wait_until(lambda: "marker for bob" in texts_of(p.events(), CONV)), "the marker did not arrive")
        with p.lock:
            msgs = list(p.messages)
        check(all(t.startswith(BOB.topic + "/") for t, _ in msgs), "a PUBLISH outside bob's topics: %s" %
              [t for t, _ in msgs])
        leaked = [f for _, f in msgs if f.WhichOneof("body") == "event" and f.event.message.conversation_id == dconv]
        check(not leaked, "dave's conversation reached bob: %s" % leaked)
    finally:
        p.stop()


# ---------------------------------------------------------- a raw MQTT 5 client

def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def utf8(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise CheckFailed("connection closed")
        buf += chunk
    return buf


def read_packet(s):
    """(first byte, body) of the next packet; socket timeout bounds it."""
    first = recv_exact(s, 1)[0]
    n, shift = 0, 0
    for _ in range(4):
        b = recv_exact(s, 1)[0]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first, recv_exact(s, n)


# MQTT 5 property types by identifier (section 2.2.2.2)
PROP_KIND = {}
for i in (0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A):
    PROP_KIND[i] = "byte"
for i in (0x13, 0x21, 0x22, 0x23):
    PROP_KIND[i] = "u16"
for i in (0x02, 0x11, 0x18, 0x27):
    PROP_KIND[i] = "u32"
PROP_KIND[0x0B] = "varint"
for i in (0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F, 0x09, 0x16):
    PROP_KIND[i] = "bytes"
PROP_KIND[0x26] = "pair"


def parse_props(b):
    """{identifier: value} of a property block (its length first); and the rest."""
    n, shift, pos = 0, 0, 0
    while True:
        c = b[pos]
        pos += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            break
    end = pos + n
    props = {}
    while pos < end:
        pid = b[pos]
        pos += 1
        kind = PROP_KIND.get(pid)
        if kind == "byte":
            props[pid] = b[pos]
            pos += 1
        elif kind == "u16":
            props[pid] = struct.unpack(">H", b[pos:pos + 2])[0]
            pos += 2
        elif kind == "u32":
            props[pid] = struct.unpack(">I", b[pos:pos + 4])[0]
            pos += 4
        elif kind == "varint":
            v, sh = 0, 0
            while True:
                c = b[pos]
                pos += 1
                v |= (c & 0x7F) << sh
                sh += 7
                if not c & 0x80:
                    break
            props[pid] = v
        elif kind == "bytes":
            ln = struct.unpack(">H", b[pos:pos + 2])[0]
            props[pid] = b[pos + 2:pos + 2 + ln]
            pos += 2 + ln
        elif kind == "pair":
            for _ in range(2):
                ln = struct.unpack(">H", b[pos:pos + 2])[0]
                pos += 2 + ln
        else:
            raise CheckFailed("unknown property 0x%02x" % pid)
    return props, b[end:]


AUTH_METHOD = "parley-ed25519"


def auth_connect(dev, method=AUTH_METHOD, tamper=False):
    """Enhanced authentication on a raw socket: (CONNACK reason, socket, AUTH nonce)."""
    s = socket.create_connection(("127.0.0.1", S.mqtt_port), timeout=10)
    props = bytes([0x15]) + utf8(method)
    body = utf8("MQTT") + bytes([5, 0x00]) + struct.pack(">H", 60) + varint(len(props)) + props + utf8(dev.client_id)
    s.sendall(packet(0x10, body))
    first, body = read_packet(s)
    if first >> 4 == 2:   # CONNACK straight away: refused
        return body[1], s, None
    check(first == 0xF0, "expected AUTH, got packet type %d" % (first >> 4))
    check(body[0] == 0x18, "AUTH reason 0x%02x, expected 0x18 Continue authentication" % body[0])
    props, _ = parse_props(body[1:])
    check(props.get(0x15) == AUTH_METHOD.encode(), "AUTH method %r" % props.get(0x15))
    nonce = props.get(0x16, b"")
    check(len(nonce) == 32, "AUTH data of %d bytes, expected a 32-byte nonce" % len(nonce))
    key = nacl.signing.SigningKey(dev.secret_key[:32])   # libsodium's secret key: seed || public key
    signed = bytes(b ^ (1 if tamper and i == 0 else 0) for i, b in enumerate(nonce))
    sig = key.sign(b"parley.v1 mqtt auth" + signed).signature
    aprops = bytes([0x15]) + utf8(AUTH_METHOD) + bytes([0x16]) + struct.pack(">H", len(sig)) + sig
    s.sendall(packet(0xF0, bytes([0x18]) + varint(len(aprops)) + aprops))
    first, body = read_packet(s)
    check(first >> 4 == 2, "expected CONNACK, got packet type %d" % (first >> 4))
    return body[1], s, nonce


def raw_enhanced_auth_parley_ed25519():
    rc, s, nonce = auth_connect(BOB)
    try:
        check(rc == 0x00, "CONNACK reason 0x%02x after a good signature" % rc)
        topic = utf8(BOB.topic + "/ev")
        s.sendall(packet(0x82, struct.pack(">H", 9) + varint(0) + topic + bytes([1])))
        first, body = read_packet(s)
        while first >> 4 == 3:   # events of the session may come first
            first, body = read_packet(s)
        check(first >> 4 == 9 and body[:2] == struct.pack(">H", 9), "expected SUBACK 9, got type %d" % (first >> 4))
        _, codes = parse_props(body[2:])
        check(codes == bytes([1]), "SUBACK reason codes %s" % codes.hex())
        s.sendall(packet(0xE0, bytes([0x00, 0x00])))   # DISCONNECT, normal
    finally:
        s.close()
    rc, s, _ = auth_connect(BOB, tamper=True)
    s.close()
    check(rc == 0x87, "a signature over another nonce: CONNACK 0x%02x, expected 0x87" % rc)
    rc, s, _ = auth_connect(BOB, method="parley-rot13")
    s.close()
    check(rc == 0x8C, "an unknown method: CONNACK 0x%02x, expected 0x8C" % rc)


def main():
    global S, ALICE, BOB, DAVE, CONV
    S, (ALICE, BOB, DAVE), CONV = start_with_devices("alice", "bob", "dave")
    for case in (paho_password_send_and_receive, paho_reconnect_catches_up, paho_subscribe_elsewhere_refused,
                 raw_enhanced_auth_parley_ed25519):
        run_case(case)
    S.stop()
    exit_with_cases()


if __name__ == "__main__":
    main()
