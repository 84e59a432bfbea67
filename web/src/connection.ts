// One WebSocket to parley (subprotocol parley.v1, one binary protobuf Frame
// per message) that stays up: requests matched to responses by request_id,
// pushes handed to the app, and after a loss a reconnect with backoff and
// full jitter (backoff.ts) until it is back; the app signs in again and
// resumes sync from its cursor in onOpen.
import { backoffDelayMs } from './backoff';
import { decodeFrame, encodeFrame, Status, type Frame, type FrameBody, type Response } from './proto';

export type ConnState = 'connecting' | 'connected' | 'offline';

export class RequestError extends Error {
  constructor(readonly status: number, message: string, readonly retryAfterMs: number) {
    super(message);
  }
}

const REQUEST_TIMEOUT_MS = 15_000;
/** Status ACCEPTED (202, parley.proto): with --kafka a send is durable in the
 * server's log while its store is away; the SENT for the same request id
 * follows once it is stored. Not a failure: wait, do not retry. */
const STATUS_ACCEPTED = 202;
const ACCEPTED_WAIT_MS = 300_000;
const MAX_PENDING_REQUESTS = 256;

interface Pending {
  resolve: (r: Response) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export interface ConnectionHooks {
  /** a new socket got its challenge: sign in (or wait for the user) */
  onOpen: (nonce: Uint8Array) => void;
  onPush: (f: Frame) => void;
  onState: (s: ConnState, detail: string) => void;
}

export class Connection {
  private ws: WebSocket | null = null;
  private nextId = 1n;
  private pending = new Map<bigint, Pending>();
  private attempt = 0;
  private retryAfterMs = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  nonce: Uint8Array | null = null;
  readonly host: string;

  constructor(private url: string, private hooks: ConnectionHooks) {
    this.host = new URL(url).host;
  }

  start(): void {
    if (this.ws || this.reconnectTimer) return;
    this.hooks.onState('connecting', this.attempt ? `attempt ${this.attempt + 1}` : '');
    const ws = new WebSocket(this.url, 'parley.v1');
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onmessage = (ev) => this.onMessage(ev);
    ws.onclose = (ev) => this.onClose(ws, ev.code, ev.reason);
  }

  /** Called by the app once signed in: the connection counts as good. */
  markSignedIn(): void {
    this.attempt = 0;
    this.retryAfterMs = 0;
    this.hooks.onState('connected', '');
  }

  /** Remembers a Retry-After the server gave, for the next reconnect. */
  noteRetryAfter(ms: number): void {
    this.retryAfterMs = Math.max(this.retryAfterMs, ms);
  }

  /** Drops the socket (it is reconnected with backoff). */
  drop(reason: string): void {
    this.ws?.close(4000, reason.slice(0, 100));
  }

  request(body: FrameBody): Promise<Response> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error('not connected'));
    if (this.pending.size >= MAX_PENDING_REQUESTS) return Promise.reject(new Error('too many requests waiting'));
    const id = this.nextId++;
    return new Promise<Response>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error('request timed out'));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      ws.send(encodeFrame(id, body) as Uint8Array<ArrayBuffer>);
    }).then((r) => {
      if (r.status !== Status.OK) {
        if (r.retryAfterMs) this.noteRetryAfter(Number(r.retryAfterMs));
        throw new RequestError(r.status, r.error || Status[r.status] || String(r.status), Number(r.retryAfterMs));
      }
      return r;
    });
  }

  /** A frame that gets no response (Ack, AckDeviceMessages). */
  post(body: FrameBody): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(encodeFrame(0n, body) as Uint8Array<ArrayBuffer>);
    return true;
  }

  private onMessage(ev: MessageEvent): void {
    if (!(ev.data instanceof ArrayBuffer)) return this.drop('text frame');
    let f: Frame;
    try {
      f = decodeFrame(new Uint8Array(ev.data));
    } catch {
      return this.drop('undecodable frame');
    }
    if (f.requestId !== 0n && f.body.case === 'response') {
      const p = this.pending.get(f.requestId);
      if (!p) return;
      if ((f.body.value.status as number) === STATUS_ACCEPTED) {
        const id = f.requestId;
        clearTimeout(p.timer);
        p.timer = setTimeout(() => {
          this.pending.delete(id);
          p.reject(new Error('accepted, but not stored in time'));
        }, ACCEPTED_WAIT_MS);
        return;
      }
      this.pending.delete(f.requestId);
      clearTimeout(p.timer);
      p.resolve(f.body.value);
      return;
    }
    if (f.body.case === 'challenge') {
      const first = this.nonce === null;
      this.nonce = f.body.value.nonce;
      if (first) this.hooks.onOpen(this.nonce);
      return;
    }
    this.hooks.onPush(f);
  }

  private onClose(ws: WebSocket, code: number, reason: string): void {
    if (this.ws !== ws) return;
    this.ws = null;
    this.nonce = null;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error('connection lost'));
    }
    this.pending.clear();
    const delay = backoffDelayMs({ attempt: this.attempt, closeCode: code, retryAfterMs: this.retryAfterMs });
    this.attempt++;
    this.retryAfterMs = 0;
    this.hooks.onState('offline', `closed (${code}${reason ? ' ' + reason : ''}); retrying in ${(delay / 1000).toFixed(1)} s`);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.start();
    }, delay);
  }
}
