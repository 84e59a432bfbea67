// The device's view of its inbox (libparley's client/sync.c): events after
// the cursor, deduplicated by (conversation, seq) and by user_seq, so that
// at-least-once delivery (a replay after a reconnect, a sync racing live
// traffic) reaches the app exactly once; acks are cumulative.

export class SyncCursor {
  /** highest user_seq handled (acked or about to be) */
  delivered: bigint;
  /** highest user_seq acknowledged to the server */
  acked: bigint;
  private seen = new Map<bigint, bigint>();

  constructor(cursor: bigint) {
    this.delivered = cursor;
    this.acked = cursor;
  }

  /** Is this event new to the app? Moves the cursor past it either way. */
  accept(userSeq: bigint, conversationId: bigint, seq: bigint): boolean {
    let fresh = true;
    if (userSeq !== 0n && userSeq <= this.acked) fresh = false;
    else if (conversationId !== 0n && seq <= (this.seen.get(conversationId) ?? 0n)) fresh = false;
    if (fresh && conversationId !== 0n) this.seen.set(conversationId, seq);
    if (userSeq > this.delivered) this.delivered = userSeq;
    return fresh;
  }

  /** The user_seq to ack now, or null when the server already has it. */
  takeAck(): bigint | null {
    if (this.delivered <= this.acked) return null;
    this.acked = this.delivered;
    return this.acked;
  }
}
