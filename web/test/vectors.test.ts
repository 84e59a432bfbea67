// The shared end-to-end encryption vectors (tests/vectors/*.json, the
// contract in tests/vectors/README.md), every one of them, through the
// browser's TypeScript: the same bytes from the same randomness as
// libparley's C (tests/unit/test_e2e.c) and check_vectors.py. A missing
// vector file, or one this test does not know, is a failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fromHex, toHex } from '../src/e2e/bytes';
import { E2EError, E2EStatus } from '../src/e2e/errors';
import { type Bundle, identityFromSeed, prekeySign, x3dhInitiate, x3dhRespond } from '../src/e2e/keys';
import { identityX25519Public, identityX25519Secret, kdfCk, setTestRng } from '../src/e2e/primitives';
import { SenderKey } from '../src/e2e/senderKeys';
import { Session } from '../src/e2e/session';
import { x25519Base } from '../src/e2e/curve';

const DIR = new URL('../../tests/vectors/', import.meta.url);
const KNOWN = ['ratchet.json', 'sender_keys.json', 'x3dh.json'];
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const load = (name: string): any => JSON.parse(readFileSync(new URL(name, DIR), 'utf8'));
const enc = new TextEncoder();
const dec = new TextDecoder();

/** A party's random values, in the order used; running out is a failure. */
function rng(values: string[]) {
  let i = 0;
  return (len: number) => {
    if (i >= values.length) throw new Error(`randomness exhausted after ${i} values`);
    return fromHex(values[i++]!).slice(0, len);
  };
}

test('every vector file is there, and each is one this test checks', () => {
  const present = readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();
  assert.deepEqual(present, KNOWN);
});

test('x3dh.json: identities, X25519 conversion, pre-keys, signature, SK with and without a one-time pre-key', () => {
  const v = load('x3dh.json');
  for (const who of ['alice', 'bob']) {
    const id = identityFromSeed(fromHex(v[`${who}_identity_seed`]));
    assert.equal(toHex(id.pk), v[`${who}_identity_public`], `${who} identity`);
    assert.equal(toHex(identityX25519Secret(id.sk)), v[`${who}_identity_x25519_private`], `${who} x25519 private`);
    assert.equal(toHex(identityX25519Public(id.pk)), v[`${who}_identity_x25519_public`], `${who} x25519 public`);
  }
  const alice = identityFromSeed(fromHex(v.alice_identity_seed));
  const bob = identityFromSeed(fromHex(v.bob_identity_seed));
  assert.equal(v.alice_random[0], v.alice_identity_seed);
  assert.equal(v.bob_random[1], v.bob_signed_prekey_private);
  assert.equal(v.bob_random[2], v.bob_one_time_prekey_private);
  assert.equal(v.alice_random[1], v.alice_ephemeral_private);
  const pre = (k: string, id: number) => {
    const sk = fromHex(v[`${k}_private`]);
    const pk = x25519Base(sk);
    assert.equal(toHex(pk), v[`${k}_public`], k);
    return { id, pk, sk };
  };
  const spk = pre('bob_signed_prekey', v.bob_signed_prekey_id);
  const otk = pre('bob_one_time_prekey', v.bob_one_time_prekey_id);
  const ek = fromHex(v.alice_ephemeral_private);
  assert.equal(toHex(x25519Base(ek)), v.alice_ephemeral_public);
  assert.equal(toHex(prekeySign(bob, spk)), v.bob_signed_prekey_signature);
  const bundle: Bundle = { identity: bob.pk, spkId: spk.id, spk: spk.pk, spkSig: fromHex(v.bob_signed_prekey_signature) };
  assert.equal(toHex(x3dhInitiate(alice, ek, { ...bundle, otk })), v.shared_secret_with_one_time_prekey);
  assert.equal(toHex(x3dhRespond(bob, spk, otk, alice.pk, fromHex(v.alice_ephemeral_public))), v.shared_secret_with_one_time_prekey);
  assert.equal(toHex(x3dhInitiate(alice, ek, bundle)), v.shared_secret_without_one_time_prekey);
  assert.equal(toHex(x3dhRespond(bob, spk, null, alice.pk, fromHex(v.alice_ephemeral_public))), v.shared_secret_without_one_time_prekey);
  // a bundle whose signature does not verify is refused
  const bad = fromHex(v.bob_signed_prekey_signature);
  bad[0]! ^= 1;
  assert.throws(() => x3dhInitiate(alice, ek, { ...bundle, spkSig: bad }),
                (e: unknown) => e instanceof E2EError && e.status === E2EStatus.BAD_BUNDLE);
});

test('ratchet.json: every step, out of order, each party saved and loaded between steps', () => {
  const v = load('ratchet.json');
  const arng = rng(v.alice_random), brng = rng(v.bob_random);
  try {
    setTestRng(arng);
    const alice = identityFromSeed(arng(32));
    setTestRng(brng);
    const bob = identityFromSeed(brng(32));
    assert.equal(toHex(alice.pk), v.alice_identity_public);
    assert.equal(toHex(bob.pk), v.bob_identity_public);
    const mk = (id: number) => { const sk = brng(32); return { id, sk, pk: x25519Base(sk) }; };
    const spk = mk(v.bob_signed_prekey_id), otk = mk(v.bob_one_time_prekey_id);
    assert.equal(toHex(spk.pk), v.bob_signed_prekey_public);
    assert.equal(toHex(otk.pk), v.bob_one_time_prekey_public);
    const bundle: Bundle = { identity: bob.pk, spkId: spk.id, spk: spk.pk, spkSig: fromHex(v.bob_signed_prekey_signature), otk };
    let a: Session | null = null, b: Session | null = null;
    const sent = new Map<string, Uint8Array>();
    for (const step of v.steps) {
      const who = step.party as 'alice' | 'bob';
      setTestRng(who === 'alice' ? arng : brng);
      if (step.op === 'send') {
        if (who === 'alice') a ??= Session.initiate(alice, bundle);
        const s = who === 'alice' ? a! : b!;
        const ct = s.encrypt(enc.encode(step.plaintext));
        assert.equal(toHex(ct), step.ciphertext, `${step.message} ciphertext`);
        sent.set(step.message, ct);
      } else {
        const ct = sent.get(step.message)!;
        let pt: Uint8Array;
        if (who === 'bob' && !b) [b, pt] = Session.accept(bob, spk, otk, ct);
        else pt = (who === 'alice' ? a! : b!).decrypt(ct);
        assert.equal(dec.decode(pt), step.plaintext, `${step.message} plaintext`);
        // the same message again: a replay, refused, and the session unchanged
        assert.throws(() => (who === 'alice' ? a! : b!).decrypt(ct), E2EError, `${step.message} replayed`);
      }
      // state round trip (session.c's format) between every step
      if (a) { const saved = a.save(); a = Session.load(saved); assert.deepEqual(a.save(), saved); }
      if (b) { const saved = b.save(); b = Session.load(saved); assert.deepEqual(b.save(), saved); }
    }
    // a tampered message does not authenticate
    const t = sent.get('A4')!.slice();
    t[t.length - 1]! ^= 1;
    assert.throws(() => b!.decrypt(t), (e: unknown) => e instanceof E2EError && (e.status === E2EStatus.AUTH || e.status === E2EStatus.REPLAY));
  } finally {
    setTestRng(null);
  }
});

test('sender_keys.json: distribution, chain steps, messages, received out of order', () => {
  const v = load('sender_keys.json');
  const r = rng(v.sender_random);
  let own: SenderKey;
  try {
    setTestRng(r);
    own = SenderKey.create();
  } finally {
    setTestRng(null);
  }
  assert.equal(own.keyId, v.key_id);
  assert.equal(toHex(own.distribution()), v.distribution);
  let ck = fromHex(v.chain_key);
  for (const c of v.chain) {
    const [mk, next] = kdfCk(ck);
    assert.equal(toHex(mk), c.message_key, `iteration ${c.iteration} message key`);
    assert.equal(toHex(next), c.next_chain_key, `iteration ${c.iteration} next chain key`);
    ck = next;
  }
  for (const m of v.messages) {
    assert.equal(own.iteration, m.iteration);
    assert.equal(toHex(own.encrypt(enc.encode(m.plaintext))), m.ciphertext, `message ${m.iteration}`);
  }
  let peer = SenderKey.fromDistribution(fromHex(v.distribution));
  for (const i of v.receive_order) {
    const m = v.messages[i];
    assert.equal(dec.decode(peer.decrypt(fromHex(m.ciphertext))), m.plaintext, `message ${m.iteration}`);
    assert.throws(() => peer.decrypt(fromHex(m.ciphertext)), (e: unknown) => e instanceof E2EError && e.status === E2EStatus.REPLAY);
    const saved = peer.save();
    peer = SenderKey.load(saved);
    assert.deepEqual(peer.save(), saved);
  }
  // a receiver holds no signing key: it cannot send with the sender's key
  assert.throws(() => peer.encrypt(enc.encode('x')), E2EError);
  // a forged signature is refused
  const forged = fromHex(v.messages[0].ciphertext);
  forged[forged.length - 1]! ^= 1;
  assert.throws(() => SenderKey.fromDistribution(fromHex(v.distribution)).decrypt(forged),
                (e: unknown) => e instanceof E2EError && e.status === E2EStatus.AUTH);
});
