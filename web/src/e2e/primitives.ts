// The building blocks, byte for byte those of libparley's client/e2e/
// primitives.c (on curve.ts's noble primitives) (tests/vectors/README.md "Derivations"): X25519, HMAC-SHA256
// and HKDF-SHA256 from it, ChaCha20-Poly1305 IETF with key and nonce from
// HKDF of the one-use message key.
import { concat } from './bytes';
import { E2EError, E2EStatus } from './errors';
import { aeadOpen, aeadSeal, ed25519PkToX25519, ed25519SkToX25519, hmacSha256, randomBytes, x25519Base, x25519Dh } from './curve';

export const INFO_MESSAGE = 'parley.e2e message v1';
export const INFO_SENDER = 'parley.e2e sender message v1';
export const INFO_RATCHET = 'parley.e2e ratchet v1';
export const INFO_X3DH = 'parley.e2e x3dh v1';
export const AEAD_TAG = 16;
export const SIG_BYTES = 64;
export const MAX_PLAINTEXT = 65536;   // E2E_MAX_PLAINTEXT
export const MAX_SKIP = 1000;         // keys one message may make us skip in a chain
export const MAX_SKIPPED_KEPT = 1000; // skipped keys kept per session / sender key
export const MAX_STATE_BYTES = 1 << 20;

// Randomness: WebCrypto's, or (unit tests only) a fixed sequence, so the
// vectors' "random values in the order used" can be replayed.
let testRng: ((len: number) => Uint8Array) | null = null;
export function setTestRng(fn: ((len: number) => Uint8Array) | null): void { testRng = fn; }
export function random(len: number): Uint8Array {
  return testRng ? testRng(len) : randomBytes(len);
}

export interface DHPair { pk: Uint8Array; sk: Uint8Array }

export function dhKeypair(): DHPair {
  const sk = random(32);
  return { pk: x25519Base(sk), sk };
}

/** X25519; an all-zero (low-order) result is refused, as libsodium does. */
export function dh(sk: Uint8Array, pk: Uint8Array): Uint8Array {
  try {
    return x25519Dh(sk, pk);
  } catch {
    throw new E2EError(E2EStatus.BAD_BUNDLE);
  }
}

export function identityX25519Public(edPk: Uint8Array): Uint8Array {
  try {
    return ed25519PkToX25519(edPk);
  } catch {
    throw new E2EError(E2EStatus.BAD_BUNDLE);
  }
}

export function identityX25519Secret(edSk: Uint8Array): Uint8Array {
  return ed25519SkToX25519(edSk);
}

export function hmac(key: Uint8Array, msg: Uint8Array): Uint8Array {
  return hmacSha256(key, msg);
}

const ZERO_SALT = new Uint8Array(32);

/** HKDF-SHA256 (RFC 5869); salt null is 32 zero bytes. */
export function hkdf(len: number, salt: Uint8Array | null, ikm: Uint8Array, info: string): Uint8Array {
  const prk = hmac(salt && salt.length ? salt : ZERO_SALT, ikm);
  const infoBytes = new TextEncoder().encode(info);
  const out = new Uint8Array(len);
  let t: Uint8Array = new Uint8Array(0);
  for (let i = 1, done = 0; done < len && i < 256; i++) {
    t = hmac(prk, concat(t, infoBytes, Uint8Array.of(i)));
    const n = Math.min(len - done, t.length);
    out.set(t.subarray(0, n), done);
    done += n;
  }
  return out;
}

/** KDF_RK: (new root key, chain key). */
export function kdfRk(rk: Uint8Array, dhOut: Uint8Array): [Uint8Array, Uint8Array] {
  const okm = hkdf(64, rk, dhOut, INFO_RATCHET);
  return [okm.slice(0, 32), okm.slice(32, 64)];
}

/** KDF_CK: (message key, next chain key). */
export function kdfCk(ck: Uint8Array): [Uint8Array, Uint8Array] {
  return [hmac(ck, Uint8Array.of(1)), hmac(ck, Uint8Array.of(2))];
}

function aeadKeys(mk: Uint8Array, info: string): [Uint8Array, Uint8Array] {
  const okm = hkdf(44, null, mk, info);
  return [okm.slice(0, 32), okm.slice(32, 44)];
}

/** ciphertext || 16-byte tag */
export function seal(pt: Uint8Array, ad: Uint8Array, mk: Uint8Array, info: string): Uint8Array {
  const [key, nonce] = aeadKeys(mk, info);
  return aeadSeal(key, nonce, pt, ad);
}

export function open(ct: Uint8Array, ad: Uint8Array, mk: Uint8Array, info: string): Uint8Array {
  if (ct.length < AEAD_TAG) throw new E2EError(E2EStatus.MALFORMED);
  const [key, nonce] = aeadKeys(mk, info);
  try {
    return aeadOpen(key, nonce, ct, ad);
  } catch {
    throw new E2EError(E2EStatus.AUTH);
  }
}
