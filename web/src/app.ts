// The app's behaviour: sign-in, sync, sending, receipts, typing, presence,
// groups. The DOM is ui.ts's; this file only changes the model and asks
// for a render.
import { create } from '@bufbuild/protobuf';
import { newDeviceKeys, signChallenge } from './auth';
import { Connection, RequestError, type ConnState } from './connection';
import { E2EError } from './e2e/errors';
import { MAX_ENCRYPTED_TEXT } from './e2e/store';
import { Encryption, type Shown } from './encryption';
import * as keystore from './keystore';
import { Thread, type Bubble, type Conversation, type MemberReceipt } from './model';
import {
  ConversationKind, Membership_Action, MessageType, type Frame, type FrameBody, type Message,
  AckSchema, CreateGroupSchema, HistorySchema, LookupUserSchema, MarkReadSchema, OpenDirectSchema,
  RegisterDeviceSchema, RegisterUserSchema, RemoveMemberSchema, AddMembersSchema, SendMessageSchema,
  SignInSchema, StartSyncSchema, SubscribePresenceSchema, TypingSchema, GetReceiptsSchema,
  ListConversationsSchema, CreateLinkTokenSchema, AcceptRequestSchema,
} from './proto';
import { SyncCursor } from './sync';

const HISTORY_PAGE = 30;
const TYPING_SHOWN_MS = 6_000;
const TYPING_RESEND_MS = 3_000;
const MAX_BODY_BYTES = MAX_ENCRYPTED_TEXT;   // a SendMessage body holds the text, encrypted
const MAX_UNSENT = 500;          // optimistic bubbles kept while offline
const PREVIEW_FETCH_MAX = 50;
const PRESENCE_PROBE_MAX = 64;
const PRESENCE_RETRY_MS = 30_000;

export interface Presence { online: boolean; lastSeen: number }

const dec = new TextDecoder();
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

export class App {
  identity: keystore.Identity | null = null;
  connState: ConnState = 'connecting';
  connDetail = '';
  signedIn = false;
  syncing = false;
  needsLogin = false;
  error = '';
  linkToken = '';
  signInRefused = false;
  convs = new Map<bigint, Conversation>();
  threads = new Map<bigint, Thread>();
  receipts = new Map<bigint, Map<bigint, MemberReceipt>>();
  typing = new Map<bigint, Map<bigint, number>>();   // conversation -> user -> shown until
  presence = new Map<bigint, Presence>();
  names = new Map<bigint, string>();
  current: bigint | null = null;
  pushKey: Uint8Array | null = null;   // the server's VAPID key, from the sign-in answer (pushui.ts)
  private conn: Connection;
  private sync = new SyncCursor(0n);
  private ackTimer: ReturnType<typeof setTimeout> | null = null;
  private typingSentAt = 0;
  private typingStopTimer: ReturnType<typeof setTimeout> | null = null;
  private peers: bigint[] = [];
  private presenceRetriedAt = 0;
  private e2e: Encryption;

  constructor(url: string, private render: () => void) {
    this.conn = new Connection(url, {
      onOpen: () => void this.onOpen(),
      onPush: (f) => this.onPush(f),
      onState: (s, d) => { this.connState = s; this.connDetail = d; if (s !== 'connected') this.signedIn = false; this.render(); },
    });
    this.e2e = new Encryption(this.conn, (conv, seq, shown) => this.reshow(conv, seq, shown));
  }

  async start(): Promise<void> {
    this.identity = (await keystore.loadIdentity()) ?? null;
    this.names = await keystore.loadNames();
    this.sync = new SyncCursor(await keystore.loadCursor());
    this.conn.start();
  }

  /** A request on the connection, for code beside the app (pushui.ts). */
  request = (body: FrameBody) => this.conn.request(body);

  nameOf(user: bigint): string {
    if (this.identity && user === this.identity.userId) return this.identity.userName || 'me';
    return this.names.get(user) ?? `#${user.toString().slice(-6)}`;
  }

  convTitle(c: Conversation): string {
    if (c.group) return c.name || 'group';
    const peer = c.members.find((m) => m !== this.identity?.userId);
    return peer !== undefined ? this.nameOf(peer) : c.name || 'direct';
  }

  // ------------------------------------------------------------ sign-in

  private async onOpen(): Promise<void> {
    if (!this.identity) { this.needsLogin = true; this.render(); return; }
    try {
      const sig = await signChallenge(this.identity.privateKey, this.conn.nonce!, this.conn.host);
      const r = await this.conn.request({ case: 'signIn', value: create(SignInSchema, {
        userId: this.identity.userId, deviceId: this.identity.deviceId, signature: sig }) });
      if (r.result.case === 'registered') this.pushKey = r.result.value.pushVapidPublicKey;
      await this.afterSignIn();
    } catch (e) {
      // 401: the server does not know this device (removed, or a new store):
      // retrying will not help; the user may forget it and register or link again
      if (e instanceof RequestError && e.status === 401) {
        this.signInRefused = true;
        this.conn.drop('sign-in refused');
      }
      this.fail(e);
    }
  }

  async register(name: string): Promise<void> { await this.enroll(name, null); }
  async link(token: string, name: string): Promise<void> { await this.enroll(name, token); }

  /** First device of a new user (token null) or a further device (link token). */
  private async enroll(name: string, token: string | null): Promise<void> {
    this.error = '';
    const nonce = this.conn.nonce;
    if (!nonce) throw new Error('not connected yet');
    const keys = await newDeviceKeys();
    const signature = await signChallenge(keys.privateKey, nonce, this.conn.host);
    const deviceName = `browser ${navigator.userAgent.match(/Chrom\w+\/\d+/)?.[0] ?? ''}`.slice(0, 64);
    const r = token === null
      ? await this.conn.request({ case: 'registerUser', value: create(RegisterUserSchema, {
          name, devicePublicKey: keys.publicRaw, deviceName, signature }) })
      : await this.conn.request({ case: 'registerDevice', value: create(RegisterDeviceSchema, {
          token, devicePublicKey: keys.publicRaw, deviceName, signature }) });
    if (r.result.case !== 'registered') throw new Error('no registration in the answer');
    this.identity = { userId: r.result.value.userId, deviceId: r.result.value.deviceId, userName: name,
                      privateKey: keys.privateKey, publicRaw: keys.publicRaw };
    await keystore.saveIdentity(this.identity);
    this.needsLogin = false;
    await this.afterSignIn();
  }

  private async afterSignIn(): Promise<void> {
    this.signedIn = true;
    this.conn.markSignedIn();
    this.syncing = true;
    // the key store before any message: what arrives is decrypted as it comes
    await this.e2e.open({ user: this.identity!.userId, device: this.identity!.deviceId })
      .catch((e) => this.fail(new Error(`end-to-end keys: ${e instanceof Error ? e.message : String(e)}`)));
    await this.conn.request({ case: 'startSync', value: create(StartSyncSchema, { afterUserSeq: this.sync.delivered }) });
    this.scheduleAck(0);   // events handled but not acked before a loss
    await this.refreshConversations();
    for (const [id, t] of this.threads) for (const p of t.pending) void this.transmit(id, p);
    if (this.current !== null) await this.loadReceipts(this.current);
    this.render();
  }

  async forgetDevice(): Promise<void> {
    await keystore.forgetAll();
    location.reload();
  }

  async createLinkToken(): Promise<void> {
    const r = await this.conn.request({ case: 'createLinkToken', value: create(CreateLinkTokenSchema, {}) });
    if (r.result.case === 'linkToken') this.linkToken = r.result.value.token;
    this.render();
  }

  // --------------------------------------------------------- conversations

  async refreshConversations(): Promise<void> {
    const r = await this.conn.request({ case: 'listConversations', value: create(ListConversationsSchema, {}) });
    if (r.result.case !== 'conversations') return;
    const seen = new Set<bigint>();
    const users = new Set<bigint>();
    for (const s of r.result.value.conversations) {
      seen.add(s.conversationId);
      const old = this.convs.get(s.conversationId);
      this.convs.set(s.conversationId, {
        id: s.conversationId, group: s.kind === ConversationKind.GROUP, name: s.name,
        lastSeq: s.lastSeq, readSeq: s.readSeq, unread: Number(s.unread), members: s.memberUserIds,
        admins: s.adminUserIds, request: s.request, lastText: old?.lastText ?? '', lastTs: old?.lastTs ?? 0,
      });
      for (const m of s.memberUserIds) if (m !== this.identity?.userId) users.add(m);
    }
    for (const id of [...this.convs.keys()]) if (!seen.has(id)) this.convs.delete(id);
    if (this.current !== null && !this.convs.has(this.current)) this.current = null;
    this.peers = [...users];
    await this.subscribePresence();
    let fetched = 0;
    for (const c of this.convs.values()) {
      if (c.lastText || c.lastSeq === 0n || fetched++ >= PREVIEW_FETCH_MAX) continue;
      const page = await this.history(c.id, 0n, 1).catch(() => null);
      const m = page?.messages[0];
      if (m) this.notePreview(c, m);
    }
    this.render();
  }

  /** Presence of everyone we share a conversation with. The server refuses
   * the whole list if one of them has not accepted us (consent), without
   * saying who: then each is asked alone (at most PRESENCE_PROBE_MAX) and
   * the list is sent again without the refused ones. */
  private async subscribePresence(): Promise<void> {
    const ask = (ids: bigint[]) =>
      this.conn.request({ case: 'subscribePresence', value: create(SubscribePresenceSchema, { userIds: ids }) }).then(() => true, () => false);
    const all = this.peers.slice(0, 1024);
    if (await ask(all)) return;
    const allowed: bigint[] = [];
    for (const u of all.slice(0, PRESENCE_PROBE_MAX)) if (await ask([u])) allowed.push(u);
    await ask(allowed);
  }

  private async history(conv: bigint, before: bigint, limit: number) {
    const r = await this.conn.request({ case: 'history', value: create(HistorySchema, { conversationId: conv, beforeSeq: before, limit }) });
    return r.result.case === 'history' ? r.result.value : null;
  }

  async openConversation(id: bigint | null): Promise<void> {
    this.current = id;
    this.render();
    if (id === null) return;
    const t = this.thread(id);
    if (!t.loaded) {
      const page = await this.history(id, 0n, HISTORY_PAGE).catch((e) => { this.fail(e); return null; });
      if (page) {
        for (const m of page.messages) t.add(this.bubbleOf(m));
        t.hasMore = page.hasMore;
        t.loaded = true;
      }
    }
    await this.loadReceipts(id);
    this.markRead();
    this.render();
  }

  /** The next page back, when the user scrolls to the top. */
  async loadOlder(): Promise<boolean> {
    const id = this.current;
    if (id === null) return false;
    const t = this.thread(id);
    if (!t.hasMore || t.loadingOlder || !t.loaded) return false;
    t.loadingOlder = true;
    try {
      const page = await this.history(id, t.oldestSeq(), HISTORY_PAGE);
      if (!page) return false;
      for (const m of page.messages) t.add(this.bubbleOf(m));
      t.hasMore = page.hasMore && page.messages.length > 0;
      return page.messages.length > 0;
    } finally {
      t.loadingOlder = false;
    }
  }

  private async loadReceipts(id: bigint): Promise<void> {
    const r = await this.conn.request({ case: 'getReceipts', value: create(GetReceiptsSchema, { conversationId: id }) }).catch(() => null);
    if (r?.result.case !== 'receipts') return;
    for (const m of r.result.value.members) this.setReceipt(id, m.userId, m.deliveredSeq, m.readSeq);
  }

  markRead(): void {
    const c = this.current !== null ? this.convs.get(this.current) : undefined;
    if (!c || !this.signedIn || document.visibilityState !== 'visible') return;
    if (c.lastSeq > c.readSeq) {
      c.readSeq = c.lastSeq;
      void this.conn.request({ case: 'markRead', value: create(MarkReadSchema, { conversationId: c.id, seq: c.lastSeq }) }).catch(() => undefined);
    }
    c.unread = 0;
  }

  async lookup(name: string): Promise<bigint> {
    const r = await this.conn.request({ case: 'lookupUser', value: create(LookupUserSchema, { name }) });
    if (r.result.case !== 'user') throw new Error(`no user ${name}`);
    this.names.set(r.result.value.userId, r.result.value.name);
    await keystore.saveNames(this.names);
    return r.result.value.userId;
  }

  async openDirect(name: string): Promise<void> {
    const peer = await this.lookup(name);
    const r = await this.conn.request({ case: 'openDirect', value: create(OpenDirectSchema, { peerUserId: peer }) });
    if (r.result.case !== 'conversation') return;
    await this.refreshConversations();
    await this.openConversation(r.result.value.conversationId);
  }

  async createGroup(name: string, memberNames: string[]): Promise<void> {
    const ids: bigint[] = [];
    for (const n of memberNames) ids.push(await this.lookup(n));
    const r = await this.conn.request({ case: 'createGroup', value: create(CreateGroupSchema, { name, memberUserIds: ids }) });
    if (r.result.case !== 'conversation') return;
    await this.refreshConversations();
    await this.openConversation(r.result.value.conversationId);
  }

  async addMember(name: string): Promise<void> {
    if (this.current === null) return;
    const id = await this.lookup(name);
    await this.conn.request({ case: 'addMembers', value: create(AddMembersSchema, { conversationId: this.current, userIds: [id] }) });
    await this.refreshConversations();
  }

  /** Accepts a message request: until then the sender learns nothing of
   * this user's reading or presence (the server's consent rules). */
  async accept(): Promise<void> {
    if (this.current === null) return;
    await this.conn.request({ case: 'acceptRequest', value: create(AcceptRequestSchema, { conversationId: this.current }) });
    await this.refreshConversations();
  }

  async leave(): Promise<void> {
    if (this.current === null || !this.identity) return;
    await this.conn.request({ case: 'removeMember', value: create(RemoveMemberSchema, { conversationId: this.current, userId: this.identity.userId }) });
    this.current = null;
    await this.refreshConversations();
  }

  // ------------------------------------------------------------- messages

  thread(id: bigint): Thread {
    let t = this.threads.get(id);
    if (!t) { t = new Thread(); this.threads.set(id, t); }
    return t;
  }

  private bubbleOf(m: Message): Bubble {
    const b: Bubble = { seq: m.seq, sender: m.senderUserId, ts: Number(m.serverTs), clientId: hex(m.clientMsgId),
                        system: m.type === MessageType.MEMBERSHIP, text: '' };
    if (b.system) { b.text = this.membershipText(m); return b; }
    if (m.type !== MessageType.TEXT) { b.text = dec.decode(m.body); return b; }
    const shown = this.e2e.show(m, (cid) => this.thread(m.conversationId).pending.find((p) => p.clientId === hex(cid))?.text);
    b.text = shown.text;
    b.locked = shown.locked;
    b.plain = shown.plain;
    return b;
  }

  /** A message decrypted late (its sender key came after it): shown again. */
  private reshow(conv: bigint, seq: bigint, shown: Shown): void {
    const b = this.threads.get(conv)?.bySeq.get(seq);
    if (b) { b.text = shown.text; b.locked = shown.locked; b.plain = shown.plain; }
    const c = this.convs.get(conv);
    if (c && b && b.ts >= c.lastTs) c.lastText = `${b.sender === this.identity?.userId ? 'you' : this.nameOf(b.sender)}: ${b.text}`;
    this.render();
  }

  private membershipText(m: Message): string {
    const who = this.nameOf(m.senderUserId);
    const users = (m.membership?.userIds ?? []).map((u) => this.nameOf(u)).join(', ');
    switch (m.membership?.action) {
      case Membership_Action.CREATED: return `${who} created ${m.membership.name ? '"' + m.membership.name + '"' : 'the conversation'}`;
      case Membership_Action.ADDED: return `${who} added ${users}`;
      case Membership_Action.REMOVED: return `${who} removed ${users}`;
      case Membership_Action.LEFT: return `${users || who} left`;
      case Membership_Action.RENAMED: return `${who} renamed the group to "${m.membership.name}"`;
      default: return 'membership changed';
    }
  }

  private notePreview(c: Conversation, m: Message): void {
    const b = this.bubbleOf(m);
    if (Number(m.serverTs) >= c.lastTs) {
      c.lastText = b.system ? b.text : `${m.senderUserId === this.identity?.userId ? 'you' : this.nameOf(m.senderUserId)}: ${b.text}`;
      c.lastTs = Number(m.serverTs);
    }
  }

  async send(text: string): Promise<void> {
    const id = this.current;
    if (id === null || !this.identity || !text.trim()) return;
    if (new TextEncoder().encode(text).length > MAX_BODY_BYTES) { this.error = 'message too long'; this.render(); return; }
    let unsent = 0;
    for (const t of this.threads.values()) unsent += t.pending.length;
    if (unsent >= MAX_UNSENT) { this.error = `${unsent} messages are still waiting to be sent`; this.render(); return; }
    const b: Bubble = { seq: null, sender: this.identity.userId, text, ts: Date.now(),
                        clientId: hex(crypto.getRandomValues(new Uint8Array(16))), system: false };
    this.thread(id).pending.push(b);
    this.stopTyping();
    this.render();
    await this.transmit(id, b);
  }

  /** Sends (or sends again, after a reconnect) with the same client_msg_id:
   * the server answers a repeat with the first one's seq. */
  private async transmit(conv: bigint, b: Bubble): Promise<void> {
    if (!this.signedIn || b.seq !== null) return;
    const clientMsgId = new Uint8Array(b.clientId.match(/../g)!.map((x) => parseInt(x, 16)));
    try {
      // encrypted once: a resend after a reconnect carries the same bytes
      b.wire ??= await this.e2e.encrypt(conv, this.convs.get(conv)?.members ?? [], b.text);
      const r = await this.conn.request({ case: 'sendMessage', value: create(SendMessageSchema, {
        conversationId: conv, clientMsgId, type: MessageType.TEXT, body: b.wire }) });
      if (r.result.case !== 'sent') return;
      b.seq = r.result.value.seq;
      this.e2e.noteSent(conv, b.seq, b.text);
      b.ts = Number(r.result.value.serverTs);
      b.failed = undefined;
      this.thread(conv).add(b);
      const c = this.convs.get(conv);
      if (c) {
        if (b.seq > c.lastSeq) c.lastSeq = b.seq;
        if (b.ts >= c.lastTs) { c.lastText = `you: ${b.text}`; c.lastTs = b.ts; }
      }
    } catch (e) {
      // a lost connection leaves it pending: it is sent again after sign-in
      if (e instanceof E2EError) b.failed = `not encrypted: ${e.message}`;
      else if (e instanceof RequestError && e.status !== 429 && e.status !== 503 && e.status !== 507) b.failed = e.message;
      else if (e instanceof RequestError) setTimeout(() => void this.transmit(conv, b), Math.max(e.retryAfterMs, 500));
    }
    this.render();
  }

  /** Called on each keystroke in the composer. */
  typed(): void {
    if (this.current === null || !this.signedIn) return;
    const now = Date.now();
    if (now - this.typingSentAt > TYPING_RESEND_MS) {
      this.typingSentAt = now;
      void this.conn.request({ case: 'typing', value: create(TypingSchema, { conversationId: this.current, typing: true }) }).catch(() => undefined);
    }
    if (this.typingStopTimer) clearTimeout(this.typingStopTimer);
    this.typingStopTimer = setTimeout(() => this.stopTyping(), TYPING_RESEND_MS + 1_000);
  }

  private stopTyping(): void {
    if (this.typingStopTimer) clearTimeout(this.typingStopTimer);
    this.typingStopTimer = null;
    if (!this.typingSentAt || this.current === null) return;
    this.typingSentAt = 0;
    void this.conn.request({ case: 'typing', value: create(TypingSchema, { conversationId: this.current, typing: false }) }).catch(() => undefined);
  }

  typers(conv: bigint): bigint[] {
    const now = Date.now();
    return [...(this.typing.get(conv) ?? new Map<bigint, number>())].filter(([, until]) => until > now).map(([u]) => u);
  }

  // --------------------------------------------------------------- pushes

  private onPush(f: Frame): void {
    switch (f.body.case) {
      case 'event': {
        const e = f.body.value;
        const m = e.message;
        if (m && this.sync.accept(e.userSeq, m.conversationId, m.seq)) this.onMessage(m);
        this.scheduleAck(this.syncing ? 200 : 50);
        break;
      }
      case 'syncDone':
        this.syncing = false;
        for (const r of f.body.value.receipts) this.onReceipt(r.conversationId, r.userId, r.kind, r.seq);
        this.scheduleAck(0);
        break;
      case 'receipt': {
        const r = f.body.value;
        this.onReceipt(r.conversationId, r.userId, r.kind, r.seq);
        break;
      }
      case 'typingIndicator': {
        const t = f.body.value;
        const m = this.typing.get(t.conversationId) ?? new Map<bigint, number>();
        if (t.typing) m.set(t.userId, Date.now() + TYPING_SHOWN_MS); else m.delete(t.userId);
        this.typing.set(t.conversationId, m);
        setTimeout(() => this.render(), TYPING_SHOWN_MS + 50);
        break;
      }
      case 'presence': {
        const p = f.body.value;
        this.presence.set(p.userId, { online: p.online, lastSeen: Number(p.lastSeenTs) });
        break;
      }
      case 'deviceMessage':
        void this.e2e.onDeviceMessage(f.body.value).then((problem) => { if (problem) this.fail(new Error(problem)); });
        return;
      case 'keysLow':
        void this.e2e.refill().catch((e) => this.fail(e));
        return;
      default:
        return;   // device list changes: the next send asks GetDevices anyway
    }
    this.render();
  }

  private onMessage(m: Message): void {
    const t = this.thread(m.conversationId);
    const b = this.bubbleOf(m);
    if (t.loaded) t.add(b); else t.pending = t.pending.filter((p) => p.clientId !== b.clientId);
    const c = this.convs.get(m.conversationId);
    // a membership change or a new conversation: the list is the server's to say
    if (!c || m.type === MessageType.MEMBERSHIP) void this.refreshConversations().catch(() => undefined);
    if (!c) return;
    const typers = this.typing.get(m.conversationId);
    typers?.delete(m.senderUserId);
    const beyondSummary = m.seq > c.lastSeq;   // not yet counted in the server's unread
    if (beyondSummary) c.lastSeq = m.seq;
    this.notePreview(c, m);
    if (m.senderUserId === this.identity?.userId) return;
    if (!this.presence.has(m.senderUserId) && this.peers.includes(m.senderUserId) &&
        Date.now() - this.presenceRetriedAt > PRESENCE_RETRY_MS) {
      this.presenceRetriedAt = Date.now();   // a stranger in a group may write often: ask again at most this often
      void this.subscribePresence();
    }
    if (this.current === m.conversationId) this.markRead();
    else if (beyondSummary && m.seq > c.readSeq) c.unread++;
  }

  private onReceipt(conv: bigint, user: bigint, kind: number, seq: bigint): void {
    // ReceiptKind: 1 delivered, 2 read (read implies delivered)
    this.setReceipt(conv, user, seq, kind === 2 ? seq : 0n);
  }

  private setReceipt(conv: bigint, user: bigint, delivered: bigint, read: bigint): void {
    const m = this.receipts.get(conv) ?? new Map<bigint, MemberReceipt>();
    const r = m.get(user) ?? { delivered: 0n, read: 0n };
    if (delivered > r.delivered) r.delivered = delivered;
    if (read > r.read) r.read = read;
    m.set(user, r);
    this.receipts.set(conv, m);
  }

  private scheduleAck(ms: number): void {
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null;
      if (!this.signedIn) return;   // acked after the next sign-in (afterSignIn)
      const upTo = this.sync.takeAck();
      if (upTo === null) return;
      if (this.conn.post({ case: 'ack', value: create(AckSchema, { userSeq: upTo }) })) void keystore.saveCursor(upTo);
    }, ms);
  }

  fail(e: unknown): void {
    this.error = e instanceof Error ? e.message : String(e);
    this.render();
  }
}
