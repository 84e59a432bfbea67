// Reconnect delays, the same rule as libparley's (client/reconnect.c):
// exponential backoff with full jitter, uniform in [0, min(cap, base * 2^n)],
// so clients that lost the same server do not come back in one wave; a
// close with 1013 (Try Again Later) widens the window four times; a
// Retry-After the server gave (retry_after_ms) is waited in full on top.

export const CLOSE_TRY_AGAIN = 1013;
export const RETRY_AFTER_MAX_MS = 300_000;

export interface BackoffInput {
  attempt: number;          // failed attempts since the last good connection
  closeCode?: number;       // how the last connection ended
  retryAfterMs?: number;    // what the server asked for, if anything
  baseMs?: number;
  capMs?: number;
  random?: () => number;    // uniform in [0, 1)
}

export function backoffDelayMs(b: BackoffInput): number {
  const base = b.baseMs ?? 500;
  const cap = b.capMs ?? 30_000;
  const exp = Math.min(b.attempt, 30) + (b.closeCode === CLOSE_TRY_AGAIN ? 2 : 0);
  const window = Math.min(cap, base * 2 ** exp);
  const r = (b.random ?? Math.random)();
  let delay = Math.floor(Math.min(Math.max(r, 0), 0.999999) * (window + 1));
  if (b.retryAfterMs && b.retryAfterMs > 0) delay += Math.min(b.retryAfterMs, RETRY_AFTER_MAX_MS);
  return delay;
}
