// The sign-in proof: the bytes signed are exactly libparley's
// ("parley.v1 auth" || nonce || Host), and the signature verifies with the
// device's public key (as the server's crypto_sign_verify_detached does).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, verify } from 'node:crypto';
import { authMessage, newDeviceKeys, signChallenge } from '../src/auth';

const nonce = Uint8Array.from({ length: 32 }, (_, i) => i);

test('authMessage is context, nonce, host with nothing between', () => {
  const m = authMessage(nonce, '127.0.0.1:8080');
  assert.equal(Buffer.from(m.subarray(0, 14)).toString('latin1'), 'parley.v1 auth');
  assert.deepEqual(m.subarray(14, 46), nonce);
  assert.equal(Buffer.from(m.subarray(46)).toString('latin1'), '127.0.0.1:8080');
  assert.equal(m.length, 14 + 32 + 14);
});

test('authMessage refuses a nonce that is not 32 bytes and an overlong host', () => {
  assert.throws(() => authMessage(nonce.subarray(0, 31), 'h'));
  assert.throws(() => authMessage(nonce, 'h'.repeat(256)));
});

test('a signature over the challenge verifies with the raw public key', async () => {
  const keys = await newDeviceKeys();
  assert.equal(keys.publicRaw.length, 32);
  const sig = await signChallenge(keys.privateKey, nonce, 'chat.example.org:443');
  assert.equal(sig.length, 64);
  // raw Ed25519 public key -> SPKI (the 12-byte prefix of RFC 8410)
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(keys.publicRaw)]);
  const pub = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  assert.ok(verify(null, authMessage(nonce, 'chat.example.org:443'), pub, sig));
  assert.ok(!verify(null, authMessage(nonce, 'other.example.org:443'), pub, sig), 'signed for one host, valid for another');
});

test('the private key cannot be exported', async () => {
  const keys = await newDeviceKeys();
  await assert.rejects(crypto.subtle.exportKey('pkcs8', keys.privateKey));
});
