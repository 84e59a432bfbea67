// Catching up from the cursor: a replay (after a reconnect, or a sync that
// overlaps live traffic) reaches the app once, in order, and the cursor
// still moves past every event so the server can let go of it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SyncCursor } from '../src/sync';
import { Thread, tickFor, type Bubble } from '../src/model';

test('events at or before the acked cursor are dropped; later ones pass once', () => {
  const s = new SyncCursor(10n);
  assert.equal(s.accept(9n, 1n, 5n), false);
  assert.equal(s.accept(10n, 1n, 6n), false);
  assert.equal(s.accept(11n, 1n, 7n), true);
  assert.equal(s.accept(11n, 1n, 7n), false, 'the same event twice');
  assert.equal(s.accept(12n, 2n, 1n), true);
  assert.equal(s.takeAck(), 12n);
  assert.equal(s.takeAck(), null, 'nothing new to ack');
});

test('a replay with new user_seqs of messages already seen is dropped by (conversation, seq)', () => {
  const s = new SyncCursor(0n);
  assert.equal(s.accept(1n, 7n, 1n), true);
  assert.equal(s.accept(2n, 7n, 2n), true);
  assert.equal(s.accept(3n, 7n, 2n), false);
  assert.equal(s.delivered, 3n, 'the cursor moves past a dropped event');
});

const bubble = (seq: bigint | null, clientId: string): Bubble =>
  ({ seq, sender: 1n, text: 't', ts: 0, clientId, system: false });

test('a thread holds each seq once, and the stored copy replaces the optimistic bubble', () => {
  const t = new Thread();
  t.pending.push(bubble(null, 'aa'));
  t.add(bubble(2n, 'bb'));
  t.add(bubble(1n, 'aa'));
  t.add(bubble(2n, 'bb'));
  assert.deepEqual(t.ordered().map((b) => b.seq), [1n, 2n]);
  assert.equal(t.pending.length, 0);
  assert.equal(t.oldestSeq(), 1n);
});

test('ticks: pending, sent, delivered, read from every other member\'s receipts', () => {
  const me = 1n;
  const members = [1n, 2n, 3n];
  assert.equal(tickFor(bubble(null, 'x'), me, members, undefined), 'pending');
  const r = new Map([[2n, { delivered: 5n, read: 5n }], [3n, { delivered: 4n, read: 0n }]]);
  assert.equal(tickFor(bubble(5n, 'x'), me, members, r), 'sent');
  r.set(3n, { delivered: 5n, read: 0n });
  assert.equal(tickFor(bubble(5n, 'x'), me, members, r), 'delivered');
  r.set(3n, { delivered: 5n, read: 6n });
  assert.equal(tickFor(bubble(5n, 'x'), me, members, r), 'read');
});
