#!/usr/bin/env python3
"""push_double.py -- a Web Push service for tests, written from the RFCs.

Started by tests/integration/test_push.c on 127.0.0.1 over https (a
certificate made at test time). It makes N subscriptions (P-256 key pairs
and auth secrets it keeps) and writes them to DIR/subs.txt as
"ID ENDPOINT P256DH AUTH" (base64url). For every POST /push/ID it checks:
  - RFC 8292: Authorization "vapid t=JWT, k=KEY"; KEY equals DIR/vapid-key
    (written by the test from the server's /push/vapid-public-key); the
    JWT is ES256, signed by KEY, aud is this origin, exp within 24 h, sub a
    mailto: or https: URI;
  - RFC 8030: TTL (a number), Urgency (if present) one of the four,
    Topic (if present) at most 32 base64url characters;
  - RFC 8291/8188: Content-Encoding aes128gcm, and the body decrypts with
    the subscription's private key and auth secret (one record, 0x02
    delimiter).
It appends one JSON line per request to DIR/log.jsonl (valid, error,
payload, status answered, headers) and answers 201, or what DIR/mode-ID
says: "STATUS RETRY_AFTER COUNT" answers STATUS (with Retry-After when
RETRY_AFTER > 0) to the next COUNT valid requests, then 201 again.
An invalid request gets 400.
"""
import argparse
import base64
import json
import os
import signal
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAX_BODY = 8192


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def hkdf(salt, ikm, info, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def point(public_key):
    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def decrypt(body, private_key, auth):
    """RFC 8291 section 3.4 and RFC 8188, for a single record."""
    if len(body) < 21:
        raise ValueError("body shorter than the aes128gcm header")
    salt, rs, idlen = body[:16], int.from_bytes(body[16:20], "big"), body[20]
    if idlen != 65:
        raise ValueError("keyid is not a 65-byte P-256 point")
    as_public = body[21:86]
    ciphertext = body[86:]
    if rs < 18 or len(ciphertext) > rs:
        raise ValueError("more than one record")
    sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), as_public)
    secret = private_key.exchange(ec.ECDH(), sender)
    ua_public = point(private_key.public_key())
    ikm = hkdf(auth, secret, b"WebPush: info\x00" + ua_public + as_public, 32)
    cek = hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    record = AESGCM(cek).decrypt(nonce, ciphertext, None)
    end = record.rstrip(b"\x00")
    if not end or end[-1] != 2:
        raise ValueError("record does not end with the last-record delimiter 0x02")
    return end[:-1]


def verify_vapid(header, expected_key, origin):
    if not header.startswith("vapid "):
        raise ValueError("Authorization is not the vapid scheme")
    params = {}
    for part in header[6:].split(","):
        k, _, v = part.strip().partition("=")
        params[k] = v
    if "t" not in params or "k" not in params:
        raise ValueError("vapid without t= and k=")
    if expected_key is None or params["k"] != expected_key:
        raise ValueError("k is not the server's VAPID public key")
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64d(params["k"]))
    pieces = params["t"].split(".")
    if len(pieces) != 3:
        raise ValueError("JWT is not three parts")
    head, claims = json.loads(b64d(pieces[0])), json.loads(b64d(pieces[1]))
    if head.get("alg") != "ES256":
        raise ValueError("JWT alg is not ES256")
    sig = b64d(pieces[2])
    if len(sig) != 64:
        raise ValueError("ES256 signature is not 64 bytes")
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        key.verify(der, (pieces[0] + "." + pieces[1]).encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ValueError("JWT signature does not verify")
    if claims.get("aud") != origin:
        raise ValueError("aud %r is not %r" % (claims.get("aud"), origin))
    now = time.time()
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= now or exp > now + 24 * 3600 + 60:
        raise ValueError("exp not within the next 24 hours")
    sub = claims.get("sub", "")
    if not (sub.startswith("mailto:") or sub.startswith("https:")):
        raise ValueError("sub is not a mailto: or https: URI")


class Double:
    def __init__(self, directory, port, n):
        self.dir = directory
        self.origin = "https://127.0.0.1:%d" % port
        self.lock = threading.Lock()
        self.subs = {}
        self.answered = {}  # (id, mode text) -> how many got that mode
        lines = []
        for i in range(1, n + 1):
            sid = "s%d" % i
            key = ec.generate_private_key(ec.SECP256R1())
            auth = os.urandom(16)
            self.subs[sid] = (key, auth)
            lines.append("%s %s/push/%s %s %s\n" % (sid, self.origin, sid, b64e(point(key.public_key())), b64e(auth)))
        with open(os.path.join(directory, "subs.txt.tmp"), "w") as f:
            f.writelines(lines)
        os.rename(os.path.join(directory, "subs.txt.tmp"), os.path.join(directory, "subs.txt"))

    def expected_key(self):
        try:
            with open(os.path.join(self.dir, "vapid-key")) as f:
                return f.read().strip()
        except OSError:
            return None

    def mode_for(self, sid):
        """(status, retry_after) for the next valid request of sid."""
        try:
            with open(os.path.join(self.dir, "mode-" + sid)) as f:
                text = f.read().strip()
        except OSError:
            return 201, 0
        parts = text.split()
        status, retry_after, count = int(parts[0]), int(parts[1]), int(parts[2])
        key = (sid, text)
        if self.answered.get(key, 0) >= count:
            return 201, 0
        self.answered[key] = self.answered.get(key, 0) + 1
        return status, retry_after

    def log(self, entry):
        with open(os.path.join(self.dir, "log.jsonl"), "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")


def handler_for(double):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def do_POST(self):
            sid = self.path.rsplit("/", 1)[-1]
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(min(length, MAX_BODY))
            entry = {"sub": sid, "valid": False, "error": "", "payload": "",
                     "ttl": self.headers.get("TTL"), "topic": self.headers.get("Topic"),
                     "urgency": self.headers.get("Urgency"), "body_hex": body.hex()}
            with double.lock:
                try:
                    if sid not in double.subs or not self.path.startswith("/push/"):
                        raise ValueError("unknown subscription")
                    if length > MAX_BODY:
                        raise ValueError("body too large")
                    verify_vapid(self.headers.get("Authorization", ""), double.expected_key(), double.origin)
                    if self.headers.get("Content-Encoding") != "aes128gcm":
                        raise ValueError("Content-Encoding is not aes128gcm")
                    ttl = self.headers.get("TTL")
                    if ttl is None or not ttl.isdigit():
                        raise ValueError("no TTL")
                    urgency = self.headers.get("Urgency")
                    if urgency is not None and urgency not in ("very-low", "low", "normal", "high"):
                        raise ValueError("bad Urgency")
                    topic = self.headers.get("Topic")
                    if topic is not None and (len(topic) > 32 or any(
                            not (c.isalnum() or c in "-_") for c in topic)):
                        raise ValueError("bad Topic")
                    key, auth = double.subs[sid]
                    entry["payload"] = decrypt(body, key, auth).decode()
                    entry["valid"] = True
                    status, retry_after = double.mode_for(sid)
                except (ValueError, InvalidTag, UnicodeDecodeError, json.JSONDecodeError) as e:
                    entry["error"] = str(e) or type(e).__name__
                    status, retry_after = 400, 0
                entry["status"] = status
                double.log(entry)
            self.send_response(status)
            if retry_after:
                self.send_header("Retry-After", str(retry_after))
            if status == 201:
                self.send_header("Location", "/message/1")
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--subs", type=int, default=4)
    a = ap.parse_args()
    double = Double(a.dir, a.port, a.subs)
    server = ThreadingHTTPServer(("127.0.0.1", a.port), handler_for(double))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))   # stopped by PID: exit 0
    open(os.path.join(a.dir, "ready"), "w").close()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
