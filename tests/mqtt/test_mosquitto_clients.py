#!/usr/bin/python3
"""test_mosquitto_clients.py -- Debian's mosquitto-clients drive parley's MQTT
listener (README "MQTT") with the password scheme, at MQTT 3.1.1 and 5.0:

  sub_v311_receives_from_websocket / sub_v5_...: a device registered with
    parley-cli, signed in with `parley-cli mqtt-password`, runs mosquitto_sub
    (clean session off, QoS 1) on p/USER.DEVICE/ev and gets, as a protobuf
    Frame{event}, exactly the message a WebSocket parley-cli user sent it.
  pub_v311_reaches_websocket / pub_v5_...: mosquitto_pub publishes a
    Frame{send_message} (made here from proto/parley.proto) to
    p/USER.DEVICE/req at QoS 1; the WebSocket user's `parley-cli sync` shows it.
  rr_v5_request_answered_on_res: mosquitto_rr publishes a SendMessage to
    /req and gets the Response (OK, Sent with a seq) on /res.
  password_replay_and_other_device_refused: the password of the connection
    just made (the newest the server took), an older one, and a device's
    password under another device's client id are refused at CONNACK
    (mosquitto_sub exits non-zero and receives nothing).

Every client runs with a bounded timeout (-W, subprocess timeouts); the
server is stopped by its PID on every path (mqtt_env.Server).
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mqtt_env import (WAIT_S, check, exit_with_cases, parse_frame, pb, run_case, send_frame,  # noqa: E402
                      start_with_devices, wait_until)

S = None
ALICE = BOB = CAROL = None
CONV = 0
USED_PASSWORD = None   # (client id, password) of a connection that succeeded


class Sub:
    """mosquitto_sub in the background on dev's /ev, one "topic hex" line per message."""

    def __init__(self, dev, version, creds=None):
        cid, pw = creds or dev.mqtt_password()
        self.creds = (cid, pw)
        self.out = tempfile.NamedTemporaryFile(prefix="mqtt-sub-", delete=False)
        self.err = tempfile.NamedTemporaryFile(prefix="mqtt-sub-err-", delete=False)
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-V", version, "-h", "127.0.0.1", "-p", str(S.mqtt_port), "-i", cid, "-u", cid,
             "-P", pw, "-c", "-q", "1", "-t", dev.topic + "/ev", "-F", "%t %x", "-W", str(2 * WAIT_S)],
            stdout=self.out, stderr=self.err)

    def events(self):
        """The Events received so far, as parley_pb2.Event."""
        with open(self.out.name, "rb") as f:
            lines = f.read().decode().splitlines()
        evs = []
        for line in lines:
            parts = line.split(" ", 1)
            if len(parts) != 2 or not parts[0].endswith("/ev"):
                continue
            f = parse_frame(bytes.fromhex(parts[1]))
            if f.WhichOneof("body") == "event":
                evs.append(f.event)
        return evs

    def texts(self, conv):
        return [e.message.body.decode() for e in self.events()
                if e.message.conversation_id == conv and e.message.type == pb().TEXT]

    def stop(self):
        """SIGTERM by PID (mosquitto_sub disconnects), bounded; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.stderr = open(self.err.name).read()
        for f in (self.out, self.err):
            f.close()
        os.unlink(self.out.name)
        os.unlink(self.err.name)
        return rc


def sub_receives(version, text):
    global USED_PASSWORD
    sub = Sub(BOB, version)
    try:
        # no need to wait for the SUBACK: the session is persistent, so what
        # is sent before it is in the inbox and comes with the catch-up
        seq = ALICE.send(CONV, text)
        check(wait_until(lambda: text in sub.texts(CONV) or sub.proc.poll() is not None),
              "%r did not arrive over MQTT" % text)
        ev = [e for e in sub.events() if e.message.body == text.encode()]
        check(len(ev) == 1, "arrived %d times" % len(ev))
        m = ev[0].message
        check(m.conversation_id == CONV and m.seq == seq and m.sender_user_id == ALICE.user_id
              and ev[0].user_seq > 0, "not the message sent: %s" % m)
        USED_PASSWORD = sub.creds
    finally:
        sub.stop()


def sub_v311_receives_from_websocket():
    sub_receives("mqttv311", "to mosquitto_sub 3.1.1")


def sub_v5_receives_from_websocket():
    sub_receives("mqttv5", "to mosquitto_sub 5")


def pub_reaches(version, text, request_id):
    cid, pw = BOB.mqtt_password()
    with tempfile.NamedTemporaryFile(prefix="mqtt-frame-") as f:
        f.write(send_frame(CONV, text, request_id=request_id))
        f.flush()
        r = subprocess.run(["mosquitto_pub", "-V", version, "-h", "127.0.0.1", "-p", str(S.mqtt_port), "-i", cid,
                            "-u", cid, "-P", pw, "-q", "1", "-t", BOB.topic + "/req", "-f", f.name],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=WAIT_S)
    check(r.returncode == 0, "mosquitto_pub exit %d: %s" % (r.returncode, r.stderr.decode()))
    seen = []
    check(wait_until(lambda: seen.extend(ALICE.sync_texts(wait_s=1)) or text in seen, step=0),
          "%r did not reach the WebSocket user (saw %s)" % (text, seen))
    check(seen.count(text) == 1, "shown %d times" % seen.count(text))


def pub_v311_reaches_websocket():
    pub_reaches("mqttv311", "from mosquitto_pub 3.1.1", 101)


def pub_v5_reaches_websocket():
    pub_reaches("mqttv5", "from mosquitto_pub 5", 102)


def rr_v5_request_answered_on_res():
    cid, pw = CAROL.mqtt_password()
    conv = ALICE.direct(CAROL)
    # -m, not -f or -s: Debian's mosquitto_rr 2.0.11 publishes an empty
    # payload for those. A serialized Frame of non-zero fields holds no NUL
    # byte (varints end in a non-zero byte), so it passes as an argument.
    frame = send_frame(conv, "through mosquitto_rr", request_id=77)
    check(b"\0" not in frame, "the frame holds a NUL byte")
    r = subprocess.run(["mosquitto_rr", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(S.mqtt_port), "-i", cid,
                        "-u", cid, "-P", pw, "-q", "1", "-t", CAROL.topic + "/req", "-e", CAROL.topic + "/res",
                        "-m", frame, "-F", "%x", "-W", str(WAIT_S)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=2 * WAIT_S)
    check(r.returncode == 0, "mosquitto_rr exit %d: %s" % (r.returncode, r.stderr.decode()))
    resp = parse_frame(bytes.fromhex(r.stdout.decode().split()[0]))
    check(resp.request_id == 77 and resp.WhichOneof("body") == "response", "not the Response: %s" % resp)
    check(resp.response.status == pb().OK and resp.response.sent.seq > 0, "not Sent OK: %s" % resp.response)
    seen = []
    check(wait_until(lambda: seen.extend(ALICE.sync_texts(wait_s=1)) or "through mosquitto_rr" in seen, step=0),
          "did not reach the WebSocket user")


def refused(version, creds, topic, extra=()):
    """mosquitto_sub with creds for up to 10 s (its output and exit status)."""
    cid, pw = creds
    r = subprocess.run(["mosquitto_sub", "-V", version, "-h", "127.0.0.1", "-p", str(S.mqtt_port), "-i", cid, "-u", cid,
                        "-P", pw, "-c", "-q", "1", "-t", topic, "-W", "10", *extra],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=WAIT_S)
    return r


def password_replay_and_other_device_refused():
    for version in ("mqttv311", "mqttv5"):
        # a connection that succeeds (-E: exit once subscribed), then the same
        # password again: the newest one the server took, and still refused
        creds = BOB.mqtt_password()
        r = refused(version, creds, BOB.topic + "/ev", extra=["-E"])
        check(r.returncode == 0, "%s: the fresh password was not taken: %s" % (version, r.stderr.decode()))
        r = refused(version, creds, BOB.topic + "/ev")
        check(r.returncode != 0 and r.stdout == b"", "%s: a replayed password was taken (exit %d, %r)" % (
            version, r.returncode, r.stdout[:80]))
        check(b"not authori" in r.stderr.lower() or b"bad user name or password" in r.stderr.lower(),
              "%s: refused, but not at CONNACK: %s" % (version, r.stderr.decode()))
    # an older password, already superseded
    check(USED_PASSWORD is not None, "no earlier connection")
    r = refused("mqttv311", USED_PASSWORD, BOB.topic + "/ev")
    check(r.returncode != 0 and r.stdout == b"", "an older password was taken")
    # carol's fresh password presented as bob's device
    _, pw = CAROL.mqtt_password()
    r = refused("mqttv311", (BOB.client_id, pw), BOB.topic + "/ev")
    check(r.returncode != 0 and r.stdout == b"", "another device's password was taken")


def main():
    global S, ALICE, BOB, CAROL, CONV
    S, (ALICE, BOB, CAROL), CONV = start_with_devices("alice", "bob", "carol")
    for case in (sub_v311_receives_from_websocket, sub_v5_receives_from_websocket, pub_v311_reaches_websocket,
                 pub_v5_reaches_websocket, rr_v5_request_answered_on_res, password_replay_and_other_device_refused):
        run_case(case)
    S.stop()
    exit_with_cases()


if __name__ == "__main__":
    main()
