// The generated protocol code as the app uses it (src/proto.ts): a frame
// survives encode/decode with its 64-bit ids intact, unknown fields are
// skipped (the protocol only ever adds fields), oversized input is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create } from '@bufbuild/protobuf';
import { decodeFrame, encodeFrame, MAX_FRAME_BYTES, SendMessageSchema, MessageType } from '../src/proto';

test('a SendMessage frame round-trips with uint64 ids beyond 2^53', () => {
  const conv = 0x7fff_ffff_ffff_fff1n;
  const bytes = encodeFrame(42n, { case: 'sendMessage', value: create(SendMessageSchema, {
    conversationId: conv, clientMsgId: new Uint8Array([1, 2, 3]), type: MessageType.TEXT,
    body: new TextEncoder().encode('hé') }) });
  const f = decodeFrame(bytes);
  assert.equal(f.requestId, 42n);
  assert.equal(f.body.case, 'sendMessage');
  if (f.body.case !== 'sendMessage') return;
  assert.equal(f.body.value.conversationId, conv);
  assert.deepEqual(f.body.value.clientMsgId, new Uint8Array([1, 2, 3]));
  assert.equal(new TextDecoder().decode(f.body.value.body), 'hé');
});

test('an unknown field is skipped, as the protocol requires', () => {
  // request_id = 7 (field 1, varint), then field 999 as a varint
  const bytes = new Uint8Array([0x08, 0x07, 0xb8, 0x3e, 0x01]);
  const f = decodeFrame(bytes);
  assert.equal(f.requestId, 7n);
  assert.equal(f.body.case, undefined);
});

test('a frame over MAX_FRAME_BYTES is refused before decoding', () => {
  assert.throws(() => decodeFrame(new Uint8Array(MAX_FRAME_BYTES + 1)), /too large/);
});
