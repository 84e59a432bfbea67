// Web Push, the client's requests (src/push.ts, src/push-shared.ts).
// Headless Chromium here has no push service, so pushManager.subscribe
// cannot give a real subscription: the PushRegister built from one is
// checked with a stub subscription, through the wire encoding the app
// uses (the browser test then sends such a request to a real server).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create } from '@bufbuild/protobuf';
import { generateKeyPairSync } from 'node:crypto';
import { decodeFrame, encodeFrame, ResponseSchema, PushKeySchema, type FrameBody } from '../src/proto';
import { pushRegisterBody, pushUnregisterBody, vapidKey, type SubscriptionLike } from '../src/push';
import { conversationOfHash, conversationOfPayload, conversationUrl } from '../src/push-shared';

function p256Point(): Uint8Array {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' });
  return Uint8Array.from([4, ...Buffer.from(jwk.x!, 'base64url'), ...Buffer.from(jwk.y!, 'base64url')]);
}

function stub(endpoint: string, p256dh: Uint8Array | null, auth: Uint8Array | null): SubscriptionLike {
  const buf = (b: Uint8Array | null) => (b ? b.buffer.slice(b.byteOffset, b.byteOffset + b.length) as ArrayBuffer : null);
  return { endpoint, getKey: (name) => (name === 'p256dh' ? buf(p256dh) : buf(auth)) };
}

test('PushRegister carries the endpoint, the 65-byte p256dh and the 16-byte auth, field 230 of Frame', () => {
  const point = p256Point();
  const auth = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
  const endpoint = 'https://push.example.test/send/abc_DEF-123';
  const f = decodeFrame(encodeFrame(7n, pushRegisterBody(stub(endpoint, point, auth))));
  assert.equal(f.requestId, 7n);
  assert.equal(f.body.case, 'pushRegister');
  if (f.body.case !== 'pushRegister') return;
  assert.equal(f.body.value.endpoint, endpoint);
  assert.deepEqual(f.body.value.p256dh, point);
  assert.equal(f.body.value.p256dh.length, 65);
  assert.deepEqual(f.body.value.auth, auth);
  // the field number on the wire is the protocol's (230, length-delimited: tag 0xb2 0x0e)
  const wire = encodeFrame(7n, pushRegisterBody(stub(endpoint, point, auth)));
  assert.ok(Buffer.from(wire).includes(Buffer.from([0xb2, 0x0e])));
});

test('PushRegister is refused before sending for a bad subscription', () => {
  const point = p256Point();
  const auth = new Uint8Array(16);
  assert.throws(() => pushRegisterBody(stub('http://push.example.test/x', point, auth)), /https/);
  assert.throws(() => pushRegisterBody(stub('https://p.test/' + 'a'.repeat(1024), point, auth)), /too long/);
  assert.doesNotThrow(() => pushRegisterBody(stub('https://p.test/' + 'a'.repeat(1024 - 15), point, auth)));
  assert.throws(() => pushRegisterBody(stub('https://p.test/x', point.subarray(0, 64), auth)), /p256dh/);
  assert.throws(() => pushRegisterBody(stub('https://p.test/x', null, auth)), /p256dh/);
  assert.throws(() => pushRegisterBody(stub('https://p.test/x', point, new Uint8Array(15))), /auth/);
});

test('PushUnregister is field 231 with an empty body', () => {
  const f = decodeFrame(encodeFrame(3n, pushUnregisterBody()));
  assert.equal(f.body.case, 'pushUnregister');
});

test('the VAPID key is the sign-in answer\'s, else asked for with PushGetKey', async () => {
  const key = p256Point();
  const asked: FrameBody[] = [];
  const request = async (b: FrameBody) => { asked.push(b); return create(ResponseSchema, { result: { case: 'pushKey', value: create(PushKeySchema, { vapidPublicKey: key }) } }); };
  assert.deepEqual(await vapidKey(request, key), key);
  assert.equal(asked.length, 0);
  assert.deepEqual(await vapidKey(request, new Uint8Array(0)), key);
  assert.equal(asked.length, 1);
  assert.equal(asked[0].case, 'pushGetKey');
  const none = async () => create(ResponseSchema, {});
  await assert.rejects(vapidKey(none, null), /no push key/);
});

test('a push payload gives only its conversation id, checked', () => {
  assert.equal(conversationOfPayload('{"conversation_id":"12345","count":1}'), '12345');
  assert.equal(conversationOfPayload('{"conversation_id":12345}'), null);
  assert.equal(conversationOfPayload('{"conversation_id":"12<b>"}'), null);
  assert.equal(conversationOfPayload('{"conversation_id":"0"}'), null);
  assert.equal(conversationOfPayload('not json'), null);
  assert.equal(conversationOfPayload(null), null);
  assert.equal(conversationOfPayload('null'), null);
  assert.equal(conversationUrl('12345'), '/#c=12345');
  assert.equal(conversationUrl(null), '/');
  assert.equal(conversationOfHash('#c=12345'), 12345n);
  assert.equal(conversationOfHash('#c=12345&x'), null);
  assert.equal(conversationOfHash(''), null);
});
