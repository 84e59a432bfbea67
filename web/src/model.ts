// What the app knows, kept in memory: conversations, the messages loaded
// for each (by seq, so a message seen twice is one bubble), the bubbles
// still waiting for their durable ack, receipts, typing and presence.

export type BubbleStatus = 'pending' | 'sent' | 'delivered' | 'read' | 'failed';

export interface Bubble {
  seq: bigint | null;       // null until the server's Sent
  sender: bigint;
  text: string;
  ts: number;               // ms since the epoch
  clientId: string;         // client_msg_id, hex
  system: boolean;          // a membership line written by the server
  failed?: string;
  locked?: string;          // end-to-end encrypted and not readable here: why
  plain?: boolean;          // sent without end-to-end encryption (by a client that does not encrypt)
  wire?: Uint8Array;        // our own message, encrypted once, for resends
}

export interface Conversation {
  id: bigint;
  group: boolean;
  name: string;
  lastSeq: bigint;
  readSeq: bigint;
  unread: number;
  members: bigint[];
  admins: bigint[];
  request: boolean;
  lastText: string;
  lastTs: number;
}

export class Thread {
  bySeq = new Map<bigint, Bubble>();
  pending: Bubble[] = [];
  hasMore = true;
  loaded = false;
  loadingOlder = false;

  /** Adds a stored message; drops our own pending bubble it confirms. */
  add(b: Bubble): void {
    if (b.seq === null) return;
    this.bySeq.set(b.seq, b);
    this.pending = this.pending.filter((p) => p.clientId !== b.clientId);
  }

  oldestSeq(): bigint {
    let min = 0n;
    for (const s of this.bySeq.keys()) if (min === 0n || s < min) min = s;
    return min;
  }

  ordered(): Bubble[] {
    const stored = [...this.bySeq.values()].sort((a, b) => (a.seq! < b.seq! ? -1 : a.seq! > b.seq! ? 1 : 0));
    return stored.concat(this.pending);
  }
}

export interface MemberReceipt { delivered: bigint; read: bigint }

/** The tick a message of ours shows: every other member must have it. */
export function tickFor(b: Bubble, me: bigint, members: bigint[],
                        receipts: Map<bigint, MemberReceipt> | undefined): BubbleStatus {
  if (b.failed) return 'failed';
  if (b.seq === null) return 'pending';
  const others = members.filter((m) => m !== me);
  if (others.length === 0 || !receipts) return 'sent';
  const all = (f: (r: MemberReceipt) => bigint) =>
    others.every((m) => { const r = receipts.get(m); return r !== undefined && f(r) >= b.seq!; });
  if (all((r) => r.read)) return 'read';
  if (all((r) => (r.delivered > r.read ? r.delivered : r.read))) return 'delivered';
  return 'sent';
}
