#!/usr/bin/env python3
"""check_vectors.py -- re-derives tests/vectors/*.json with Python's
`cryptography` package (X25519, Ed25519, HKDF-SHA256, HMAC-SHA256,
ChaCha20-Poly1305), independently of libsodium and of client/e2e, so the
vectors are not just our C code agreeing with itself. Follows README.md of
this directory (the byte formats and derivations). Exit 0 if every value
matches; prints what differs otherwise."""
import hashlib
import json
import os
import struct
import sys

from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = os.path.dirname(os.path.abspath(__file__))
RAW = serialization.Encoding.Raw
failures = []


def check(what, got, want):
    if got != want:
        failures.append(f"{what}: got {got!r}, want {want!r}")


def h(s):
    return bytes.fromhex(s)


def hkdf(ikm, salt, info, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hmac_sha256(key, msg):
    m = hmac.HMAC(key, hashes.SHA256())
    m.update(msg)
    return m.finalize()


def x_pub(sk):
    return X25519PrivateKey.from_private_bytes(sk).public_key().public_bytes(RAW, serialization.PublicFormat.Raw)


def dh(sk, pk):
    return X25519PrivateKey.from_private_bytes(sk).exchange(X25519PublicKey.from_public_bytes(pk))


def ed_pub(seed):
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(RAW, serialization.PublicFormat.Raw)


def ed_sign(seed, msg):
    return Ed25519PrivateKey.from_private_bytes(seed).sign(msg)


P = 2**255 - 19


def ed_pk_to_x25519(pk):
    """Edwards y -> Montgomery u = (1 + y) / (1 - y) mod p (RFC 7748 section 4.1)."""
    y = int.from_bytes(pk, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, P - 2, P) % P
    return u.to_bytes(32, "little")


def ed_seed_to_x25519(seed):
    """The X25519 scalar of an Ed25519 key: SHA-512(seed)[0:32], clamped."""
    a = bytearray(hashlib.sha512(seed).digest()[:32])
    a[0] &= 248
    a[31] &= 127
    a[31] |= 64
    return bytes(a)


def kdf_ck(ck):
    return hmac_sha256(ck, b"\x02"), hmac_sha256(ck, b"\x01")   # next chain key, message key


def kdf_rk(rk, dh_out):
    out = hkdf(dh_out, rk, b"parley.e2e ratchet v1", 64)
    return out[:32], out[32:]


def seal(mk, info, pt, ad):
    okm = hkdf(mk, None, info, 44)
    return ChaCha20Poly1305(okm[:32]).encrypt(okm[32:], pt, ad)


def open_(mk, info, ct, ad):
    okm = hkdf(mk, None, info, 44)
    return ChaCha20Poly1305(okm[:32]).decrypt(okm[32:], ct, ad)


def identity(v, who, seed):
    check(f"{who} identity public", v[f"{who}_identity_public"], ed_pub(seed).hex())
    xs = ed_seed_to_x25519(seed)
    check(f"{who} identity x25519 private", v[f"{who}_identity_x25519_private"], xs.hex())
    check(f"{who} identity x25519 public (scalar)", v[f"{who}_identity_x25519_public"], x_pub(xs).hex())
    check(f"{who} identity x25519 public (birational map)", v[f"{who}_identity_x25519_public"],
          ed_pk_to_x25519(ed_pub(seed)).hex())
    return xs


def x3dh(ik_a, ek_a, ik_b_pub_x, spk_b_pub, otk_b_pub):
    dhs = [dh(ik_a, spk_b_pub), dh(ek_a, ik_b_pub_x), dh(ek_a, spk_b_pub)]
    if otk_b_pub:
        dhs.append(dh(ek_a, otk_b_pub))
    return hkdf(b"\xff" * 32 + b"".join(dhs), None, b"parley.e2e x3dh v1", 32)


def parties(v):
    """Alice's and Bob's keys from their random values (README.md: order)."""
    ar, br = [h(x) for x in v["alice_random"]], [h(x) for x in v["bob_random"]]
    check("alice identity seed = random[0]", v["alice_identity_seed"], ar[0].hex())
    check("bob identity seed = random[0]", v["bob_identity_seed"], br[0].hex())
    a_x = identity(v, "alice", ar[0])
    b_x = identity(v, "bob", br[0])
    check("bob signed pre-key private = random[1]", v["bob_signed_prekey_private"], br[1].hex())
    check("bob signed pre-key public", v["bob_signed_prekey_public"], x_pub(br[1]).hex())
    check("bob signed pre-key signature", v["bob_signed_prekey_signature"], ed_sign(br[0], x_pub(br[1])).hex())
    Ed25519PublicKey.from_public_bytes(ed_pub(br[0])).verify(h(v["bob_signed_prekey_signature"]), x_pub(br[1]))
    check("bob one-time pre-key private = random[2]", v["bob_one_time_prekey_private"], br[2].hex())
    check("bob one-time pre-key public", v["bob_one_time_prekey_public"], x_pub(br[2]).hex())
    return ar, br, a_x, b_x


def check_x3dh(v):
    ar, br, a_x, b_x = parties(v)
    ek = ar[1]
    check("alice ephemeral private = random[1]", v["alice_ephemeral_private"], ek.hex())
    check("alice ephemeral public", v["alice_ephemeral_public"], x_pub(ek).hex())
    b_ik_x = ed_pk_to_x25519(ed_pub(br[0]))
    with_otk = x3dh(a_x, ek, b_ik_x, x_pub(br[1]), x_pub(br[2]))
    without = x3dh(a_x, ek, b_ik_x, x_pub(br[1]), None)
    check("SK with one-time pre-key", v["shared_secret_with_one_time_prekey"], with_otk.hex())
    check("SK without one-time pre-key", v["shared_secret_without_one_time_prekey"], without.hex())
    # Bob's side of the same agreement
    a_ik_x = ed_pk_to_x25519(ed_pub(ar[0]))
    bob_side = hkdf(b"\xff" * 32 + dh(br[1], a_ik_x) + dh(b_x, x_pub(ek)) + dh(br[1], x_pub(ek)) +
                    dh(br[2], x_pub(ek)), None, b"parley.e2e x3dh v1", 32)
    check("SK from Bob's side", bob_side.hex(), with_otk.hex())


class Party:
    """The Double Ratchet as Signal's specification gives it, header unencrypted."""

    def __init__(self, random_values):
        self.random = list(random_values)
        self.skipped = {}
        self.pending = None
        self.dhr = None
        self.ckr = None

    def new_dh(self):
        sk = self.random.pop(0)
        return sk, x_pub(sk)

    def encrypt(self, pt):
        self.cks, mk = kdf_ck(self.cks)
        header = b"\x02" + self.dhs[1] + struct.pack(">II", self.pn, self.ns)
        self.ns += 1
        ct = seal(mk, b"parley.e2e message v1", pt, self.ad + header)
        return (self.pending or b"") + header + ct

    def skip(self, until):
        if self.ckr is None:
            return
        while self.nr < until:
            self.ckr, mk = kdf_ck(self.ckr)
            self.skipped[(self.dhr, self.nr)] = mk
            self.nr += 1

    def decrypt(self, m):
        if m[0] == 1:
            m = m[74:]
        header, ct = m[:41], m[41:]
        dh_pub = header[1:33]
        pn, n = struct.unpack(">II", header[33:41])
        if (dh_pub, n) in self.skipped:
            return open_(self.skipped.pop((dh_pub, n)), b"parley.e2e message v1", ct, self.ad + header)
        if dh_pub != self.dhr:
            self.skip(pn)
            self.pn, self.ns, self.nr, self.dhr = self.ns, 0, 0, dh_pub
            self.rk, self.ckr = kdf_rk(self.rk, dh(self.dhs[0], self.dhr))
            self.dhs = self.new_dh()
            self.rk, self.cks = kdf_rk(self.rk, dh(self.dhs[0], self.dhr))
        self.skip(n)
        self.ckr, mk = kdf_ck(self.ckr)
        self.nr += 1
        self.pending = None
        return open_(mk, b"parley.e2e message v1", ct, self.ad + header)


def check_ratchet(v):
    ar, br, a_x, b_x = parties(v)
    a_pk, b_pk = ed_pub(ar[0]), ed_pub(br[0])
    alice, bob = Party(ar[2:]), Party(br[3:])
    # Alice: X3DH with the one-time pre-key, then the first ratchet step
    ek = ar[1]
    sk = x3dh(a_x, ek, ed_pk_to_x25519(b_pk), x_pub(br[1]), x_pub(br[2]))
    alice.ad = bob.ad = a_pk + b_pk
    alice.dhs, alice.dhr = alice.new_dh(), x_pub(br[1])
    alice.rk, alice.cks = kdf_rk(sk, dh(alice.dhs[0], alice.dhr))
    alice.ns = alice.nr = alice.pn = 0
    alice.pending = (b"\x01" + a_pk + x_pub(ek) + struct.pack(">II", v["bob_signed_prekey_id"],
                     v["bob_one_time_prekey_id"]) + b"\x01")
    # Bob: his signed pre-key is his first ratchet key
    bob.dhs, bob.rk = (br[1], x_pub(br[1])), sk
    bob.cks, bob.ns, bob.nr, bob.pn = None, 0, 0, 0
    sent = {}
    for i, st in enumerate(v["steps"]):
        p = alice if st["party"] == "alice" else bob
        if st["op"] == "send":
            ct = p.encrypt(st["plaintext"].encode())
            sent[st["message"]] = (ct, st["plaintext"])
            check(f"step {i} ({st['message']}) ciphertext", ct.hex(), st["ciphertext"])
        else:
            ct, text = sent[st["message"]]
            check(f"step {i} ({st['message']}) plaintext", p.decrypt(ct).decode(), st["plaintext"])
            check(f"step {i} ({st['message']}) is what was sent", st["plaintext"], text)


def check_sender_keys(v):
    r = [h(x) for x in v["sender_random"]]
    key_id = struct.unpack(">I", r[0][:4])[0]
    check("key id = random[0][0:4]", v["key_id"], key_id)
    check("chain key = random[1]", v["chain_key"], r[1].hex())
    check("signing seed = random[2]", v["signing_seed"], r[2].hex())
    sig_pk = ed_pub(r[2])
    check("distribution", v["distribution"], (b"\x04" + struct.pack(">II", key_id, 0) + r[1] + sig_pk).hex())
    ck = r[1]
    keys = []
    for step in v["chain"]:
        ck, mk = kdf_ck(ck)
        keys.append(mk)
        check(f"chain {step['iteration']} message key", step["message_key"], mk.hex())
        check(f"chain {step['iteration']} next chain key", step["next_chain_key"], ck.hex())
    for m in v["messages"]:
        i = m["iteration"]
        header = b"\x03" + struct.pack(">II", key_id, i)
        body = header + seal(keys[i], b"parley.e2e sender message v1", m["plaintext"].encode(), header)
        want = body + ed_sign(r[2], body)
        check(f"sender message {i}", m["ciphertext"], want.hex())
    for i in v["receive_order"]:
        m = h(v["messages"][i]["ciphertext"])
        Ed25519PublicKey.from_public_bytes(sig_pk).verify(m[-64:], m[:-64])
        pt = open_(keys[i], b"parley.e2e sender message v1", m[9:-64], m[:9])
        check(f"sender message {i} decrypts", pt.decode(), v["messages"][i]["plaintext"])


def main():
    passed = failed = 0
    for name, fn in (("x3dh.json", check_x3dh), ("ratchet.json", check_ratchet),
                     ("sender_keys.json", check_sender_keys)):
        with open(os.path.join(HERE, name)) as f:
            v = json.load(f)
        before = len(failures)
        try:
            fn(v)
        except Exception as e:   # a signature or tag that does not verify, a missing field
            failures.append(f"{name}: {type(e).__name__}: {e}")
        ok = len(failures) == before
        passed, failed = passed + ok, failed + (not ok)
        print(("PASS " if ok else "FAIL ") + "vectors_" + name.replace(".json", ""))
        for f in failures[before:]:
            print("  " + f, file=sys.stderr)
    print(f"CASES {passed} passed {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
