// Pairwise sessions, as client/e2e/session.c: X3DH to start, then the
// Double Ratchet (Signal's specification), skipped keys kept for late
// messages (at most MAX_SKIP per message, MAX_SKIPPED_KEPT in all).
//   Message:        0x02 | ratchet pub (32) | PN (u32) | N (u32) | AEAD
//   First messages: 0x01 | IK_A (32) | EK_A (32) | spk id (u32) | otk id (u32) | has otk (u8) | message
// AEAD associated data: IK_A || IK_B || the 41-byte header.
// A failed decryption changes nothing (it works on a copy).
import { Reader, Writer, concat, equal, getU32 } from './bytes';
import { E2EError, E2EStatus } from './errors';
import { type Bundle, type Identity, type PreKey, x3dhInitiate, x3dhRespond } from './keys';
import {
  AEAD_TAG, INFO_MESSAGE, MAX_PLAINTEXT, MAX_SKIP, MAX_SKIPPED_KEPT, MAX_STATE_BYTES,
  dh, dhKeypair, kdfCk, kdfRk, open, seal,
} from './primitives';

const TYPE_PREKEY = 0x01, TYPE_MESSAGE = 0x02, TYPE_STATE = 0x51, VERSION = 1;
const HEADER_LEN = 41, PREKEY_PREFIX_LEN = 74;

export interface PreKeyInfo { identity: Uint8Array; ek: Uint8Array; spkId: number; otkId: number; hasOtk: boolean }

interface Skipped { dh: Uint8Array; n: number; mk: Uint8Array }

interface State {
  ad: Uint8Array; peerIdentity: Uint8Array; rk: Uint8Array;
  dhsPk: Uint8Array; dhsSk: Uint8Array; dhr: Uint8Array; prevDhr: Uint8Array;
  cks: Uint8Array; ckr: Uint8Array;
  haveDhr: boolean; havePrevDhr: boolean; haveCks: boolean; haveCkr: boolean;
  ns: number; nr: number; pn: number;
  initiator: boolean; pending: boolean; hasOtk: boolean;
  baseEk: Uint8Array; spkId: number; otkId: number;
  skipped: Skipped[];   // oldest first
}

const z = () => new Uint8Array(32);
function blank(): State {
  return { ad: new Uint8Array(64), peerIdentity: z(), rk: z(), dhsPk: z(), dhsSk: z(), dhr: z(), prevDhr: z(),
           cks: z(), ckr: z(), haveDhr: false, havePrevDhr: false, haveCks: false, haveCkr: false,
           ns: 0, nr: 0, pn: 0, initiator: false, pending: false, hasOtk: false, baseEk: z(), spkId: 0, otkId: 0,
           skipped: [] };
}
const copy = (s: State): State => ({ ...s, skipped: s.skipped.map((k) => ({ ...k })) });

/** 1 for a first message (with its X3DH fields), 0 for an ordinary one; MALFORMED otherwise. */
export function prekeyInfo(msg: Uint8Array): { kind: 0 | 1; info?: PreKeyInfo } {
  if (msg.length < 1) throw new E2EError(E2EStatus.MALFORMED);
  if (msg[0] === TYPE_MESSAGE) {
    if (msg.length >= HEADER_LEN + AEAD_TAG) return { kind: 0 };
    throw new E2EError(E2EStatus.MALFORMED);
  }
  if (msg[0] !== TYPE_PREKEY || msg.length < PREKEY_PREFIX_LEN + HEADER_LEN + AEAD_TAG) throw new E2EError(E2EStatus.MALFORMED);
  const r = new Reader(msg, 1);
  const info: PreKeyInfo = { identity: r.bytes(32), ek: r.bytes(32), spkId: r.u32(), otkId: r.u32(), hasOtk: false };
  const has = r.u8();
  if (r.bad || has > 1 || msg[PREKEY_PREFIX_LEN] !== TYPE_MESSAGE) throw new E2EError(E2EStatus.MALFORMED);
  info.hasOtk = has === 1;
  if (!info.hasOtk && info.otkId !== 0) throw new E2EError(E2EStatus.MALFORMED);
  return { kind: 1, info };
}

export class Session {
  private constructor(private s: State) {}

  get peerIdentity(): Uint8Array { return this.s.peerIdentity; }
  get skippedCount(): number { return this.s.skipped.length; }

  static initiate(me: Identity, peer: Bundle): Session {
    const s = blank();
    const ek = dhKeypair();
    s.baseEk = ek.pk;
    const sk = x3dhInitiate(me, ek.sk, peer);
    s.ad = concat(me.pk, peer.identity);
    s.peerIdentity = peer.identity.slice();
    s.dhr = peer.spk.slice();   // the peer's signed pre-key is its first ratchet key
    s.haveDhr = true;
    const r = dhKeypair();
    s.dhsPk = r.pk; s.dhsSk = r.sk;
    [s.rk, s.cks] = kdfRk(sk, dh(s.dhsSk, s.dhr));
    s.haveCks = true;
    s.initiator = s.pending = true;
    s.spkId = peer.spkId;
    s.hasOtk = !!peer.otk;
    s.otkId = peer.otk ? peer.otk.id : 0;
    return new Session(s);
  }

  /** The responder's side, from a first message; returns the session and the plaintext. */
  static accept(me: Identity, spk: PreKey, otk: PreKey | null, msg: Uint8Array): [Session, Uint8Array] {
    const { kind, info } = prekeyInfo(msg);
    if (kind !== 1 || !info || info.spkId !== spk.id || info.hasOtk !== (otk !== null) || (otk && otk.id !== info.otkId))
      throw new E2EError(E2EStatus.WRONG_KEY);
    const s = blank();
    s.rk = x3dhRespond(me, spk, otk, info.identity, info.ek);
    s.ad = concat(info.identity, me.pk);
    s.peerIdentity = info.identity;
    s.dhsPk = spk.pk.slice(); s.dhsSk = spk.sk.slice();   // our signed pre-key is our first ratchet key
    s.baseEk = info.ek;
    s.spkId = info.spkId; s.hasOtk = info.hasOtk; s.otkId = info.otkId;
    const session = new Session(s);
    const pt = session.decryptMessage(msg.subarray(PREKEY_PREFIX_LEN));
    return [session, pt];
  }

  /** Is this first message the one this session came from (a repeat)? */
  fromPrekey(info: PreKeyInfo): boolean {
    const s = this.s;
    return !s.initiator && equal(s.baseEk, info.ek) && equal(s.peerIdentity, info.identity) &&
      s.spkId === info.spkId && s.hasOtk === info.hasOtk && s.otkId === info.otkId;
  }

  encrypt(pt: Uint8Array): Uint8Array {
    const s = this.s;
    if (pt.length > MAX_PLAINTEXT) throw new E2EError(E2EStatus.TOO_LARGE);
    if (!s.haveCks) throw new E2EError(E2EStatus.WRONG_KEY);
    const w = new Writer();
    if (s.pending)
      w.u8(TYPE_PREKEY).bytes(s.ad.subarray(0, 32)).bytes(s.baseEk).u32(s.spkId).u32(s.otkId).u8(s.hasOtk ? 1 : 0);
    const header = new Writer().u8(TYPE_MESSAGE).bytes(s.dhsPk).u32(s.pn).u32(s.ns).done();
    const [mk, next] = kdfCk(s.cks);
    s.cks = next;
    s.ns++;
    return w.bytes(header).bytes(seal(pt, concat(s.ad, header), mk, INFO_MESSAGE)).done();
  }

  decrypt(msg: Uint8Array): Uint8Array {
    const { kind, info } = prekeyInfo(msg);
    if (kind === 1) {
      // a first message: ours only if it repeats the one this session came from
      if (!info || !this.fromPrekey(info)) throw new E2EError(E2EStatus.WRONG_KEY);
      msg = msg.subarray(PREKEY_PREFIX_LEN);
    }
    return this.decryptMessage(msg);
  }

  private decryptMessage(msg: Uint8Array): Uint8Array {
    if (msg.length < HEADER_LEN + AEAD_TAG || msg[0] !== TYPE_MESSAGE) throw new E2EError(E2EStatus.MALFORMED);
    if (msg.length - HEADER_LEN - AEAD_TAG > MAX_PLAINTEXT) throw new E2EError(E2EStatus.TOO_LARGE);
    const scratch = copy(this.s);
    const pt = decryptStep(scratch, msg);
    scratch.pending = false;   // the peer has the session: no more X3DH headers
    this.s = scratch;
    return pt;
  }

  // ------------------------------------------------ persisting (session.c's format)

  save(): Uint8Array {
    const s = this.s;
    const w = new Writer().u8(TYPE_STATE).u8(VERSION).bytes(s.ad).bytes(s.peerIdentity).bytes(s.rk)
      .bytes(s.dhsPk).bytes(s.dhsSk).bytes(s.dhr).bytes(s.prevDhr).bytes(s.cks).bytes(s.ckr)
      .u8((s.haveDhr ? 1 : 0) | (s.havePrevDhr ? 2 : 0) | (s.haveCks ? 4 : 0) | (s.haveCkr ? 8 : 0) |
          (s.hasOtk ? 16 : 0) | (s.pending ? 32 : 0) | (s.initiator ? 64 : 0))
      .u32(s.ns).u32(s.nr).u32(s.pn).bytes(s.baseEk).u32(s.spkId).u32(s.otkId).u32(s.skipped.length);
    for (const k of s.skipped) w.bytes(k.dh).u32(k.n).bytes(k.mk);
    return w.done();
  }

  static load(buf: Uint8Array): Session {
    if (buf.length < 2 || buf.length > MAX_STATE_BYTES || buf[0] !== TYPE_STATE) throw new E2EError(E2EStatus.MALFORMED);
    if (buf[1] !== VERSION) throw new E2EError(E2EStatus.VERSION);
    const r = new Reader(buf, 2);
    const s = blank();
    s.ad = r.bytes(64); s.peerIdentity = r.bytes(32); s.rk = r.bytes(32); s.dhsPk = r.bytes(32); s.dhsSk = r.bytes(32);
    s.dhr = r.bytes(32); s.prevDhr = r.bytes(32); s.cks = r.bytes(32); s.ckr = r.bytes(32);
    const f = r.u8();
    s.haveDhr = !!(f & 1); s.havePrevDhr = !!(f & 2); s.haveCks = !!(f & 4); s.haveCkr = !!(f & 8);
    s.hasOtk = !!(f & 16); s.pending = !!(f & 32); s.initiator = !!(f & 64);
    s.ns = r.u32(); s.nr = r.u32(); s.pn = r.u32(); s.baseEk = r.bytes(32); s.spkId = r.u32(); s.otkId = r.u32();
    const n = r.u32();
    if (r.bad || n > MAX_SKIPPED_KEPT || r.left !== n * 68) throw new E2EError(E2EStatus.MALFORMED);
    for (let i = 0; i < n; i++) s.skipped.push({ dh: r.bytes(32), n: r.u32(), mk: r.bytes(32) });
    return new Session(s);
  }
}

function remember(s: State, n: number, mk: Uint8Array): void {
  if (s.skipped.length === MAX_SKIPPED_KEPT) s.skipped.shift();   // full: the oldest goes
  s.skipped.push({ dh: s.dhr.slice(), n, mk });
}

function skipUntil(s: State, until: number): void {
  if (!s.haveCkr || until <= s.nr) return;
  if (until - s.nr > MAX_SKIP) throw new E2EError(E2EStatus.TOO_FAR);
  while (s.nr < until) {
    const [mk, next] = kdfCk(s.ckr);
    s.ckr = next;
    remember(s, s.nr, mk);
    s.nr++;
  }
}

function dhRatchet(s: State, peerDh: Uint8Array): void {
  s.pn = s.ns;
  s.ns = s.nr = 0;
  if (s.haveDhr) { s.prevDhr = s.dhr; s.havePrevDhr = true; }
  s.dhr = peerDh.slice();
  s.haveDhr = true;
  [s.rk, s.ckr] = kdfRk(s.rk, dhOrAuth(s.dhsSk, s.dhr));
  s.haveCkr = true;
  const k = dhKeypair();
  s.dhsPk = k.pk; s.dhsSk = k.sk;
  [s.rk, s.cks] = kdfRk(s.rk, dhOrAuth(s.dhsSk, s.dhr));
  s.haveCks = true;
}

function dhOrAuth(sk: Uint8Array, pk: Uint8Array): Uint8Array {
  try { return dh(sk, pk); } catch { throw new E2EError(E2EStatus.AUTH); }
}

function decryptStep(s: State, msg: Uint8Array): Uint8Array {
  const header = msg.subarray(0, HEADER_LEN), peerDh = msg.subarray(1, 33), ct = msg.subarray(HEADER_LEN);
  const pn = getU32(msg, 33), n = getU32(msg, 37);
  const ad = concat(s.ad, header);
  for (let i = 0; i < s.skipped.length; i++) {
    const k = s.skipped[i]!;
    if (k.n !== n || !equal(k.dh, peerDh)) continue;
    const pt = open(ct, ad, k.mk, INFO_MESSAGE);
    s.skipped.splice(i, 1);
    return pt;
  }
  const current = s.haveDhr && equal(peerDh, s.dhr);
  if (current && n < s.nr) throw new E2EError(E2EStatus.REPLAY);
  if (!current && s.havePrevDhr && equal(peerDh, s.prevDhr)) throw new E2EError(E2EStatus.REPLAY);
  if (!current) {
    skipUntil(s, pn);
    dhRatchet(s, peerDh);
  }
  skipUntil(s, n);
  const [mk, next] = kdfCk(s.ckr);
  s.ckr = next;
  s.nr++;
  return open(ct, ad, mk, INFO_MESSAGE);
}
