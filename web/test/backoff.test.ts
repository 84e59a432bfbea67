import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelayMs } from '../src/backoff';

test('full jitter: the window doubles per attempt up to the cap', () => {
  const top = (attempt: number) => backoffDelayMs({ attempt, random: () => 0.999999, baseMs: 500, capMs: 30_000 });
  assert.equal(top(0), 500);
  assert.equal(top(1), 1000);
  assert.equal(top(3), 4000);
  assert.equal(top(10), 30_000);
  assert.equal(top(1000), 30_000);
  assert.equal(backoffDelayMs({ attempt: 5, random: () => 0 }), 0, 'full jitter starts at zero');
});

test('close 1013 widens the window four times', () => {
  const d = backoffDelayMs({ attempt: 0, closeCode: 1013, random: () => 0.999999, baseMs: 500 });
  assert.equal(d, 2000);
});

test('Retry-After is waited in full on top of the jitter, capped at 5 minutes', () => {
  assert.equal(backoffDelayMs({ attempt: 0, retryAfterMs: 7000, random: () => 0 }), 7000);
  assert.equal(backoffDelayMs({ attempt: 0, retryAfterMs: 10_000_000, random: () => 0 }), 300_000);
});
