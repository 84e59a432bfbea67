// End-to-end encryption in the app: the key store (e2e/store.ts) kept in
// IndexedDB, its network moves over the connection, and what the chat view
// shows for an encrypted message. Every text message this client sends is
// encrypted with the conversation's sender key; a received one is
// decrypted, or shown as undecryptable with the reason (never dropped).
//
// A message whose sender key has not come yet (the device message that
// carries it is in another queue) waits and is decrypted when it comes.
// Sender keys are one-use per message, so what was decrypted once is kept
// (plaintexts, by conversation and seq, at most PLAINTEXTS_KEPT) for
// history and previews; so is what this device sent, which it cannot
// decrypt itself. Device messages are acked only once the store that
// applied them is saved.
import { create } from '@bufbuild/protobuf';
import { RequestError, type Connection } from './connection';
import { E2EError, E2EStatus } from './e2e/errors';
import { KeyStore, type Me, type Net, type RemoteBundle, type SavedStore, isEncryptedBody } from './e2e/store';
import * as keystore from './keystore';
import {
  AckDeviceMessagesSchema, FetchKeysSchema, GetDevicesSchema, PreKeySchema, SendDeviceMessageSchema,
  UploadKeysSchema, type DeviceMessage, type Message,
} from './proto';

export const PLAINTEXTS_KEPT = 10_000;
export const WAITING_MAX = 4096;
const FETCHED_KEPT_MAX = 1024;   // users whose bundles wait for the ensuing FetchKeys
const SAVE_DELAY_MS = 100;

export interface Saved { store: SavedStore; plaintexts: [string, string][]; deviceMessagesSeen: bigint }

export type Shown = { text: string; locked?: string; plain?: boolean };

const dec = new TextDecoder();

export class Encryption {
  private store: KeyStore | null = null;
  private plaintexts = new Map<string, string>();   // conv/seq -> text, oldest first
  private waiting = new Map<string, Message>();      // conv/seq -> a message whose key has not come
  private dmSeen = 0n;
  private saveTimer: ReturnType<typeof setTimeout> | null = null;
  private saving: Promise<void> = Promise.resolve();
  private me: Me | null = null;
  // GetDevices refuses (403) a user who has not accepted us (a message
  // request), while FetchKeys answers (the server limits the claims): then
  // the device ids come from the bundles, which serve the FetchKeys that follows
  private fetched = new Map<bigint, RemoteBundle[]>();

  constructor(private conn: Connection, private onChange: (conv: bigint, seq: bigint, shown: Shown) => void) {}

  private net: Net = {
    uploadKeys: async (identityKey, spk, otks) => {
      await this.conn.request({ case: 'uploadKeys', value: create(UploadKeysSchema, {
        identityKey, signedPreKey: create(PreKeySchema, spk),
        oneTimePreKeys: otks.map((k) => create(PreKeySchema, k)) }) });
    },
    fetchKeys: async (userId) => {
      const kept = this.fetched.get(userId);
      if (kept) { this.fetched.delete(userId); return kept; }
      const r = await this.conn.request({ case: 'fetchKeys', value: create(FetchKeysSchema, { userId }) });
      if (r.result.case !== 'keyBundles') throw new Error('no key bundles in the answer');
      return r.result.value.devices.map((d) => ({ deviceId: d.deviceId, identityKey: d.identityKey,
        signedPreKey: d.signedPreKey, oneTimePreKey: d.oneTimePreKey }));
    },
    getDevices: async (userId) => {
      const r = await this.conn.request({ case: 'getDevices', value: create(GetDevicesSchema, { userId }) })
        .catch((e) => { if (e instanceof RequestError && e.status === 403) return null; throw e; });
      if (r === null) {
        const bundles = await this.net.fetchKeys(userId);
        if (this.fetched.size >= FETCHED_KEPT_MAX) this.fetched.clear();
        this.fetched.set(userId, bundles);
        return bundles.map((b) => b.deviceId);
      }
      if (r.result.case !== 'devices') throw new Error('no device list in the answer');
      return r.result.value.deviceIds;
    },
    sendDeviceMessage: async (userId, deviceId, body) => {
      await this.conn.request({ case: 'sendDeviceMessage', value: create(SendDeviceMessageSchema, { userId, deviceId, body }) });
    },
  };

  /** After sign-in: the store loaded, or made; its public keys uploaded if they were not. */
  async open(me: Me): Promise<void> {
    this.me = me;
    if (!this.store) {
      const saved = await keystore.loadE2E<Saved>();
      if (saved) {
        this.store = KeyStore.load(saved.store);
        this.plaintexts = new Map(saved.plaintexts);
        this.dmSeen = saved.deviceMessagesSeen;
      } else {
        this.store = KeyStore.create();
      }
    }
    await this.store.publish(this.net);
    await this.saveNow();
  }

  get ready(): boolean { return this.store !== null; }

  /** Text for SendMessage.body: encrypted for every member device. */
  async encrypt(conv: bigint, members: bigint[], text: string): Promise<Uint8Array> {
    if (!this.store || !this.me) throw new Error('encryption keys not loaded yet');
    const ct = await this.store.encrypt(this.net, this.me, conv, members, new TextEncoder().encode(text));
    await this.saveNow();   // the handed-out keys and the chain step, before the message goes out
    return ct;
  }

  /** What we sent ourselves: kept, since this device cannot decrypt it. */
  noteSent(conv: bigint, seq: bigint, text: string): void {
    this.keep(conv, seq, text);
    this.scheduleSave();
  }

  /** The text to show for a stored message. */
  show(m: Message, sentHere: (clientId: Uint8Array) => string | undefined): Shown {
    const key = `${m.conversationId}/${m.seq}`;
    const kept = this.plaintexts.get(key);
    if (kept !== undefined) return { text: kept };
    if (!isEncryptedBody(m.body)) return { text: dec.decode(m.body), plain: true };
    if (this.me && m.senderUserId === this.me.user && m.senderDeviceId === this.me.device) {
      const t = sentHere(m.clientMsgId);
      if (t !== undefined) return { text: t };
      return locked('sent from this device (it keeps no plaintext copy of this one)');
    }
    if (!this.store) return this.wait(m, 'encryption keys not loaded yet');
    try {
      const text = dec.decode(this.store.decrypt(m.conversationId, m.senderUserId, m.senderDeviceId, m.body));
      this.keep(m.conversationId, m.seq, text);
      this.scheduleSave();
      return { text };
    } catch (e) {
      const why = e instanceof E2EError ? e.message : String(e);
      if (e instanceof E2EError && e.status === E2EStatus.WRONG_KEY) return this.wait(m, why);
      return locked(why);
    }
  }

  private wait(m: Message, why: string): Shown {
    if (this.waiting.size < WAITING_MAX) this.waiting.set(`${m.conversationId}/${m.seq}`, m);
    return locked(`${why}; waiting for the sender's key`);
  }

  /** A device message (deduped by queue_seq): a sender key installed, waiting messages retried, acked once saved. */
  async onDeviceMessage(dm: DeviceMessage): Promise<string | null> {
    if (!this.store) return null;   // not acked: the server hands it out again after the next StartSync
    if (dm.queueSeq <= this.dmSeen) {   // handled before; our ack may have been lost with a connection
      this.conn.post({ case: 'ackDeviceMessages', value: create(AckDeviceMessagesSchema, { upTo: this.dmSeen }) });
      return null;
    }
    let problem: string | null = null;
    try {
      const conv = this.store.handleDeviceMessage(dm.senderUserId, dm.senderDeviceId, dm.body);
      this.retry(conv);
    } catch (e) {
      // not ours to read (or tampered with): said, and acked like the rest, or it comes back forever
      problem = `a key message from user ${dm.senderUserId} device ${dm.senderDeviceId}: ${e instanceof Error ? e.message : String(e)}`;
    }
    this.dmSeen = dm.queueSeq;
    await this.saveNow();
    this.conn.post({ case: 'ackDeviceMessages', value: create(AckDeviceMessagesSchema, { upTo: this.dmSeen }) });
    return problem;
  }

  /** KeysLow: a new batch of one-time pre-keys. */
  async refill(): Promise<void> {
    if (!this.store) return;
    await this.store.refill(this.net);
    await this.saveNow();
  }

  private retry(conv: bigint): void {
    for (const [key, m] of this.waiting) {
      if (m.conversationId !== conv) continue;
      this.waiting.delete(key);
      this.onChange(conv, m.seq, this.show(m, () => undefined));
    }
  }

  private keep(conv: bigint, seq: bigint, text: string): void {
    const key = `${conv}/${seq}`;
    this.plaintexts.delete(key);
    this.plaintexts.set(key, text);
    this.waiting.delete(key);
    for (const k of this.plaintexts.keys()) {
      if (this.plaintexts.size <= PLAINTEXTS_KEPT) break;
      this.plaintexts.delete(k);
    }
  }

  private scheduleSave(): void {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => { this.saveTimer = null; void this.saveNow(); }, SAVE_DELAY_MS);
  }

  /** Saves in order: a later save never lands before an earlier one. */
  saveNow(): Promise<void> {
    if (!this.store) return Promise.resolve();
    const snapshot: Saved = { store: this.store.save(), plaintexts: [...this.plaintexts], deviceMessagesSeen: this.dmSeen };
    this.saving = this.saving.then(() => keystore.saveE2E(snapshot), () => keystore.saveE2E(snapshot));
    return this.saving;
  }
}

function locked(why: string): Shown {
  return { text: `🔒 cannot be decrypted: ${why}`, locked: why };
}
