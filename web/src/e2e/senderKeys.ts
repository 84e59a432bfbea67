// Sender Keys, as client/e2e/sender_keys.c: per conversation, each sending
// device has a chain key and an Ed25519 signing key, handed once to every
// member device (pairwise-encrypted); each message is encrypted once.
//   Distribution: 0x04 | key id (u32) | iteration (u32) | chain key (32) | signing pub (32)
//   Message:      0x03 | key id (u32) | iteration (u32) | AEAD | Ed25519 signature (64)
// AEAD associated data: the 9-byte header; the signature covers header and
// AEAD output (a member cannot forge another member's messages).
import { Reader, Writer, getU32 } from './bytes';
import { E2EError, E2EStatus } from './errors';
import {
  AEAD_TAG, INFO_SENDER, MAX_PLAINTEXT, MAX_SKIP, MAX_SKIPPED_KEPT, MAX_STATE_BYTES, SIG_BYTES,
  kdfCk, open, random, seal,
} from './primitives';
import { ed25519SeedKeypair, ed25519Sign, ed25519Verify } from './curve';

const TYPE_MESSAGE = 0x03, TYPE_DISTRIBUTION = 0x04, TYPE_STATE = 0x52, VERSION = 1;
export const DISTRIBUTION_LEN = 73;
const HEADER_LEN = 9;
export const SENDER_OVERHEAD = HEADER_LEN + AEAD_TAG + SIG_BYTES;

interface Skipped { iteration: number; mk: Uint8Array }

/** The key id a sender-key message names; MALFORMED if it is not one. */
export function senderMessageKeyId(msg: Uint8Array): number {
  if (msg.length < SENDER_OVERHEAD || msg[0] !== TYPE_MESSAGE) throw new E2EError(E2EStatus.MALFORMED);
  return getU32(msg, 1);
}

export class SenderKey {
  private constructor(public keyId: number, public iteration: number, private ck: Uint8Array,
                      private sigPk: Uint8Array, private sigSk: Uint8Array | null,
                      private skipped: Skipped[] = []) {}

  get own(): boolean { return this.sigSk !== null; }

  static create(): SenderKey {
    const id = getU32(random(4), 0);   // the vectors: first 4 bytes of a random value
    const ck = random(32);
    const kp = ed25519SeedKeypair(random(32));
    return new SenderKey(id, 0, ck, kp.publicKey, kp.privateKey);
  }

  distribution(): Uint8Array {
    return new Writer().u8(TYPE_DISTRIBUTION).u32(this.keyId).u32(this.iteration).bytes(this.ck).bytes(this.sigPk).done();
  }

  static fromDistribution(msg: Uint8Array): SenderKey {
    if (msg.length !== DISTRIBUTION_LEN || msg[0] !== TYPE_DISTRIBUTION) throw new E2EError(E2EStatus.MALFORMED);
    const r = new Reader(msg, 1);
    return new SenderKey(r.u32(), r.u32(), r.bytes(32), r.bytes(32), null);
  }

  encrypt(pt: Uint8Array): Uint8Array {
    if (!this.sigSk) throw new E2EError(E2EStatus.WRONG_KEY);
    if (pt.length > MAX_PLAINTEXT) throw new E2EError(E2EStatus.TOO_LARGE);
    if (this.iteration === 0xffffffff) throw new E2EError(E2EStatus.TOO_FAR);
    const header = new Writer().u8(TYPE_MESSAGE).u32(this.keyId).u32(this.iteration).done();
    const [mk, next] = kdfCk(this.ck);
    this.ck = next;
    this.iteration++;
    const body = new Writer().bytes(header).bytes(seal(pt, header, mk, INFO_SENDER)).done();
    return new Writer().bytes(body).bytes(ed25519Sign(body, this.sigSk)).done();
  }

  /** A failed decryption changes nothing. */
  decrypt(msg: Uint8Array): Uint8Array {
    const keyId = senderMessageKeyId(msg);
    if (keyId !== this.keyId) throw new E2EError(E2EStatus.WRONG_KEY);
    if (msg.length - SENDER_OVERHEAD > MAX_PLAINTEXT) throw new E2EError(E2EStatus.TOO_LARGE);
    const signed = msg.subarray(0, msg.length - SIG_BYTES);
    if (!ed25519Verify(msg.subarray(msg.length - SIG_BYTES), signed, this.sigPk))
      throw new E2EError(E2EStatus.AUTH);
    const scratch = new SenderKey(this.keyId, this.iteration, this.ck, this.sigPk, this.sigSk, this.skipped.slice());
    const mk = scratch.takeMessageKey(getU32(msg, 5));
    const pt = open(signed.subarray(HEADER_LEN), msg.subarray(0, HEADER_LEN), mk, INFO_SENDER);
    this.iteration = scratch.iteration;
    this.ck = scratch.ck;
    this.skipped = scratch.skipped;
    return pt;
  }

  private takeMessageKey(iteration: number): Uint8Array {
    if (iteration < this.iteration) {
      const i = this.skipped.findIndex((k) => k.iteration === iteration);
      if (i < 0) throw new E2EError(E2EStatus.REPLAY);
      return this.skipped.splice(i, 1)[0]!.mk;
    }
    if (iteration - this.iteration > MAX_SKIP) throw new E2EError(E2EStatus.TOO_FAR);
    while (this.iteration < iteration) {
      const [mk, next] = kdfCk(this.ck);
      this.ck = next;
      if (this.skipped.length === MAX_SKIPPED_KEPT) this.skipped.shift();
      this.skipped.push({ iteration: this.iteration, mk });
      this.iteration++;
    }
    const [mk, next] = kdfCk(this.ck);
    this.ck = next;
    this.iteration++;
    return mk;
  }

  // ------------------------------------------ persisting (sender_keys.c's format)

  save(): Uint8Array {
    const w = new Writer().u8(TYPE_STATE).u8(VERSION).u32(this.keyId).u32(this.iteration).bytes(this.ck)
      .bytes(this.sigPk).u8(this.sigSk ? 1 : 0).bytes(this.sigSk ?? new Uint8Array(64)).u32(this.skipped.length);
    for (const k of this.skipped) w.u32(k.iteration).bytes(k.mk);
    return w.done();
  }

  static load(buf: Uint8Array): SenderKey {
    if (buf.length < 2 || buf.length > MAX_STATE_BYTES || buf[0] !== TYPE_STATE) throw new E2EError(E2EStatus.MALFORMED);
    if (buf[1] !== VERSION) throw new E2EError(E2EStatus.VERSION);
    const r = new Reader(buf, 2);
    const keyId = r.u32(), iteration = r.u32(), ck = r.bytes(32), sigPk = r.bytes(32), own = r.u8(), sigSk = r.bytes(64);
    const n = r.u32();
    if (r.bad || own > 1 || n > MAX_SKIPPED_KEPT || r.left !== n * 36) throw new E2EError(E2EStatus.MALFORMED);
    const skipped: Skipped[] = [];
    for (let i = 0; i < n; i++) skipped.push({ iteration: r.u32(), mk: r.bytes(32) });
    return new SenderKey(keyId, iteration, ck, sigPk, own ? sigSk : null, skipped);
  }

  /** The chain's next (message key, chain key): for the vectors' chain steps. */
  peekChain(): [Uint8Array, Uint8Array] { return kdfCk(this.ck); }
}
