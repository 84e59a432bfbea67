// A device's end-to-end key store, the browser's twin of libparley's
// client/e2e_client.c, with the same moves and the same bytes on the wire:
//   - publish: identity key (Ed25519, its own key: not the WebCrypto sign-in
//     key, which cannot be converted to X25519), signed pre-key 1, one-time
//     pre-keys 1000.. (100 per upload; more on KeysLow);
//   - send: one sender key per conversation, handed to every device of every
//     member (and our own other devices) that lacks it, pairwise-encrypted as
//     a device message whose plaintext is the envelope
//       0x01 | conversation id (u64) | sender-key distribution (73);
//     the key is replaced when a device that had it is no longer a target;
//   - receive: device messages install sender keys; conversation messages
//     (0x03 ...) decrypt with the sender's key.
// The network is the Net the app passes in, so this file runs under node too.
// Every table has a bound (MAX_*); the whole store is saved as one object.
import { concat, equal, getU64, u64 } from './bytes';
import { E2EError, E2EStatus } from './errors';
import { type Bundle, type Identity, type PreKey, identityFromSeed, prekeyGenerate, prekeySign } from './keys';
import { MAX_PLAINTEXT, random } from './primitives';
import { DISTRIBUTION_LEN, SENDER_OVERHEAD, SenderKey, senderMessageKeyId } from './senderKeys';
import { Session, prekeyInfo } from './session';

export const ONE_TIME_KEYS = 100;       // per upload (the server takes 200 per request)
export const UPLOAD_BATCH = 200;
export const MAX_ONE_TIME_HELD = 1000;  // private one-time keys kept (the server stores 1000)
export const MAX_SESSIONS = 4096;
export const MAX_SENDER_KEYS = 4096;
export const MAX_GIVEN = 65536;
export const MAX_MEMBERS = 1024;
export const MAX_DEVICES = 64;          // devices of one user taken from GetDevices
export const MAX_BODY = 65536;          // SendMessage.body
export const MAX_ENCRYPTED_TEXT = MAX_BODY - SENDER_OVERHEAD;

const ENVELOPE_SENDER_KEY = 0x01;
const ENVELOPE_LEN = 1 + 8 + DISTRIBUTION_LEN;

export interface RemoteBundle {
  deviceId: number; identityKey: Uint8Array;
  signedPreKey?: { keyId: number; publicKey: Uint8Array; signature: Uint8Array };
  oneTimePreKey?: { keyId: number; publicKey: Uint8Array };
}

export interface Net {
  uploadKeys(identity: Uint8Array, spk: { keyId: number; publicKey: Uint8Array; signature: Uint8Array },
             otks: { keyId: number; publicKey: Uint8Array }[]): Promise<void>;
  fetchKeys(user: bigint): Promise<RemoteBundle[]>;
  getDevices(user: bigint): Promise<number[]>;
  sendDeviceMessage(user: bigint, device: number, body: Uint8Array): Promise<void>;
}

export interface Me { user: bigint; device: number }

/** What is saved (IndexedDB's structured clone keeps Uint8Array and bigint). */
export interface SavedStore {
  v: 1;
  seed: Uint8Array;
  spk: PreKey; spkSig: Uint8Array;
  otks: PreKey[]; nextOtkId: number; publishedOtkId: number; identityPublished: boolean;
  peers: { user: bigint; device: number; s: Uint8Array; old: Uint8Array | null }[];
  keys: { conv: bigint; user: bigint; device: number; k: Uint8Array; prev: Uint8Array | null }[];
  given: string[];
}

interface Peer { user: bigint; device: number; s: Session; old: Session | null }
interface HeldKey { conv: bigint; user: bigint; device: number; k: SenderKey; prev: SenderKey | null }

const peerKey = (user: bigint, device: number) => `${user}/${device}`;
const heldKey = (conv: bigint, user: bigint, device: number) => `${conv}/${user}/${device}`;

/** A conversation message body encrypted with a sender key? */
export function isEncryptedBody(body: Uint8Array): boolean {
  return body.length >= SENDER_OVERHEAD && body[0] === 0x03;
}

export class KeyStore {
  private peers = new Map<string, Peer>();
  private keys = new Map<string, HeldKey>();
  private given = new Set<string>();   // conv/user/device/keyId
  private otks = new Map<number, PreKey>();

  private constructor(private seed: Uint8Array, readonly id: Identity, private spk: PreKey, private spkSig: Uint8Array,
                      private nextOtkId: number, private publishedOtkId: number, private identityPublished: boolean) {}

  /** A new store: identity, signed pre-key 1, ONE_TIME_KEYS one-time pre-keys from 1000. */
  static create(): KeyStore {
    const seed = random(32);
    const id = identityFromSeed(seed);
    const spk = prekeyGenerate(1);
    const st = new KeyStore(seed, id, spk, prekeySign(id, spk), 1000, 1000, false);
    st.makeOneTimeKeys(ONE_TIME_KEYS);
    return st;
  }

  private makeOneTimeKeys(n: number): void {
    for (let i = 0; i < n; i++) {
      const k = prekeyGenerate(this.nextOtkId++);
      this.otks.set(k.id, k);
    }
    // the oldest unused private keys go first beyond the bound (their public halves were handed out or dropped)
    for (const id of this.otks.keys()) {
      if (this.otks.size <= MAX_ONE_TIME_HELD) break;
      this.otks.delete(id);
    }
  }

  get oneTimeKeysHeld(): number { return this.otks.size; }

  /** Uploads what the server does not have yet: the identity and signed pre-key once, new one-time keys. */
  async publish(net: Net): Promise<void> {
    const fresh = [...this.otks.values()].filter((k) => k.id >= this.publishedOtkId);
    if (this.identityPublished && fresh.length === 0) return;
    const spk = { keyId: this.spk.id, publicKey: this.spk.pk, signature: this.spkSig };
    for (let i = 0; i === 0 || i < fresh.length; i += UPLOAD_BATCH)   // the server takes UPLOAD_BATCH per request
      await net.uploadKeys(this.id.pk, spk, fresh.slice(i, i + UPLOAD_BATCH).map((k) => ({ keyId: k.id, publicKey: k.pk })));
    this.identityPublished = true;
    this.publishedOtkId = this.nextOtkId;
  }

  /** KeysLow: a new batch of one-time pre-keys, uploaded. */
  async refill(net: Net): Promise<void> {
    this.makeOneTimeKeys(ONE_TIME_KEYS);
    await this.publish(net);
  }

  // ------------------------------------------------------------ sending

  /** Our sender key of conv at every member device that lacks it, then
   * body encrypted with it: the bytes for SendMessage.body. */
  async encrypt(net: Net, me: Me, conv: bigint, members: bigint[], body: Uint8Array): Promise<Uint8Array> {
    if (body.length > MAX_ENCRYPTED_TEXT) throw new E2EError(E2EStatus.TOO_LARGE);
    if (members.length > MAX_MEMBERS) throw new Error(`at most ${MAX_MEMBERS} members`);
    const targets = await this.collectTargets(net, me, [me.user, ...members]);
    let own = this.keys.get(heldKey(conv, me.user, me.device));
    if (own && this.reachedOutsider(conv, own.k.keyId, targets)) {
      this.rotate(conv);
      own = undefined;
    }
    if (!own) {
      own = { conv, user: me.user, device: me.device, k: SenderKey.create(), prev: null };
      this.putKey(own);
    }
    await this.giveToTargets(net, conv, own.k, targets);
    return own.k.encrypt(body);
  }

  /** Forgets our own key of conv: the next send makes and hands out a new one. */
  rotate(conv: bigint): void {
    for (const [k, h] of this.keys) if (h.conv === conv && h.k.own) this.keys.delete(k);
    for (const g of this.given) if (g.startsWith(`${conv}/`)) this.given.delete(g);
  }

  private async collectTargets(net: Net, me: Me, users: bigint[]): Promise<{ user: bigint; device: number }[]> {
    const out: { user: bigint; device: number }[] = [];
    for (const user of new Set(users)) {
      const devices = (await net.getDevices(user)).slice(0, MAX_DEVICES);
      for (const d of devices) if (user !== me.user || d !== me.device) out.push({ user, device: d });
    }
    return out;
  }

  private reachedOutsider(conv: bigint, keyId: number, targets: { user: bigint; device: number }[]): boolean {
    const inside = new Set(targets.map((t) => `${conv}/${t.user}/${t.device}/${keyId}`));
    for (const g of this.given) if (g.startsWith(`${conv}/`) && g.endsWith(`/${keyId}`) && !inside.has(g)) return true;
    return false;
  }

  private async giveToTargets(net: Net, conv: bigint, k: SenderKey, targets: { user: bigint; device: number }[]) {
    const byUser = new Map<bigint, number[]>();
    for (const t of targets) {
      if (this.given.has(`${conv}/${t.user}/${t.device}/${k.keyId}`)) continue;
      byUser.set(t.user, [...(byUser.get(t.user) ?? []), t.device]);
    }
    for (const [user, devices] of byUser) {
      await this.ensureSessions(net, user, devices);
      for (const d of devices) {
        const p = this.peers.get(peerKey(user, d));
        if (!p) continue;   // a device that never published keys cannot read; it is skipped
        const env = concat(Uint8Array.of(ENVELOPE_SENDER_KEY), u64(conv), k.distribution());
        await net.sendDeviceMessage(user, d, p.s.encrypt(env));
        if (this.given.size >= MAX_GIVEN) throw new Error(`more than ${MAX_GIVEN} sender-key hand-outs`);
        this.given.add(`${conv}/${user}/${d}/${k.keyId}`);
      }
    }
  }

  /** Sessions with the devices of user that have none, from one FetchKeys. */
  private async ensureSessions(net: Net, user: bigint, devices: number[]): Promise<void> {
    if (devices.every((d) => this.peers.has(peerKey(user, d)))) return;
    for (const b of await net.fetchKeys(user)) {
      if (this.peers.has(peerKey(user, b.deviceId)) || !devices.includes(b.deviceId)) continue;
      const spk = b.signedPreKey;
      if (b.identityKey.length !== 32 || !spk || spk.publicKey.length !== 32 || spk.signature.length !== 64 ||
          (b.oneTimePreKey && b.oneTimePreKey.publicKey.length !== 32))
        throw new Error(`device ${b.deviceId} of user ${user}: ${new E2EError(E2EStatus.BAD_BUNDLE).message}`);
      const bundle: Bundle = { identity: b.identityKey, spkId: spk.keyId, spk: spk.publicKey, spkSig: spk.signature,
                               otk: b.oneTimePreKey ? { id: b.oneTimePreKey.keyId, pk: b.oneTimePreKey.publicKey } : undefined };
      let s: Session;
      try {
        s = Session.initiate(this.id, bundle);
      } catch (e) {   // a device whose keys do not verify is left out, and said so
        throw new Error(`device ${b.deviceId} of user ${user}: ${(e as Error).message}`);
      }
      this.addPeer({ user, device: b.deviceId, s, old: null });
    }
  }

  private addPeer(p: Peer): void {
    if (this.peers.size >= MAX_SESSIONS) throw new E2EError(E2EStatus.NOMEM);
    this.peers.set(peerKey(p.user, p.device), p);
  }

  /** Installs k (the key held for the same sender becomes the previous one). */
  private putKey(h: HeldKey): void {
    const key = heldKey(h.conv, h.user, h.device);
    const old = this.keys.get(key);
    if (old && old.k.keyId === h.k.keyId) return;   // the same key again: keep our state
    if (old) { old.prev = old.k; old.k = h.k; return; }
    if (this.keys.size >= MAX_SENDER_KEYS) throw new E2EError(E2EStatus.NOMEM);
    this.keys.set(key, h);
  }

  // ----------------------------------------------------------- receiving

  /** A device message: a pairwise message carrying a sender key. Returns the conversation it is for. */
  handleDeviceMessage(senderUser: bigint, senderDevice: number, body: Uint8Array): bigint {
    const { kind, info } = prekeyInfo(body);
    const p = this.peers.get(peerKey(senderUser, senderDevice));
    let pt: Uint8Array;
    if (kind === 1 && info && !(p && p.s.fromPrekey(info)) && !(p && p.old && p.old.fromPrekey(info))) {
      // a new session the peer started; a known device with another identity is refused
      if (p && !equal(p.s.peerIdentity, info.identity)) throw new E2EError(E2EStatus.IDENTITY_CHANGED);
      let otk: PreKey | null = null;
      if (info.hasOtk) {
        otk = this.otks.get(info.otkId) ?? null;
        if (!otk) throw new E2EError(E2EStatus.REPLAY);
      }
      if (info.spkId !== this.spk.id) throw new E2EError(E2EStatus.WRONG_KEY);
      let s: Session;
      [s, pt] = Session.accept(this.id, this.spk, otk, body);
      if (otk) this.otks.delete(otk.id);   // one use only
      if (p) { p.old = p.s; p.s = s; } else this.addPeer({ user: senderUser, device: senderDevice, s, old: null });
    } else {
      if (!p) throw new E2EError(E2EStatus.WRONG_KEY);
      try {
        pt = p.s.decrypt(body);
      } catch (e) {
        if (!p.old) throw e;
        try { pt = p.old.decrypt(body); } catch { throw e; }
      }
    }
    if (pt.length !== ENVELOPE_LEN || pt[0] !== ENVELOPE_SENDER_KEY) throw new E2EError(E2EStatus.MALFORMED);
    const conv = getU64(pt, 1);
    this.putKey({ conv, user: senderUser, device: senderDevice, k: SenderKey.fromDistribution(pt.subarray(9)), prev: null });
    return conv;
  }

  /** A conversation message's plaintext; E2EError (WRONG_KEY while its key has not come) otherwise. */
  decrypt(conv: bigint, senderUser: bigint, senderDevice: number, body: Uint8Array): Uint8Array {
    const keyId = senderMessageKeyId(body);
    const h = this.keys.get(heldKey(conv, senderUser, senderDevice));
    if (!h) throw new E2EError(E2EStatus.WRONG_KEY);
    const pt = h.prev && h.prev.keyId === keyId ? h.prev.decrypt(body) : h.k.decrypt(body);
    if (pt.length > MAX_PLAINTEXT) throw new E2EError(E2EStatus.TOO_LARGE);
    return pt;
  }

  // ------------------------------------------------------------ persisting

  save(): SavedStore {
    return {
      v: 1, seed: this.seed, spk: this.spk, spkSig: this.spkSig, otks: [...this.otks.values()],
      nextOtkId: this.nextOtkId, publishedOtkId: this.publishedOtkId, identityPublished: this.identityPublished,
      peers: [...this.peers.values()].map((p) => ({ user: p.user, device: p.device, s: p.s.save(), old: p.old?.save() ?? null })),
      keys: [...this.keys.values()].map((h) => ({ conv: h.conv, user: h.user, device: h.device, k: h.k.save(), prev: h.prev?.save() ?? null })),
      given: [...this.given],
    };
  }

  static load(d: SavedStore): KeyStore {
    if (d.v !== 1) throw new E2EError(E2EStatus.VERSION);
    const st = new KeyStore(d.seed, identityFromSeed(d.seed), d.spk, d.spkSig, d.nextOtkId, d.publishedOtkId, d.identityPublished);
    for (const k of d.otks.slice(-MAX_ONE_TIME_HELD)) st.otks.set(k.id, k);
    for (const p of d.peers.slice(0, MAX_SESSIONS))
      st.peers.set(peerKey(p.user, p.device), { user: p.user, device: p.device, s: Session.load(p.s), old: p.old ? Session.load(p.old) : null });
    for (const h of d.keys.slice(0, MAX_SENDER_KEYS))
      st.keys.set(heldKey(h.conv, h.user, h.device), { conv: h.conv, user: h.user, device: h.device, k: SenderKey.load(h.k), prev: h.prev ? SenderKey.load(h.prev) : null });
    for (const g of d.given.slice(0, MAX_GIVEN)) st.given.add(g);
    return st;
  }
}
