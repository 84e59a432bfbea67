// The building blocks, byte for byte those of libparley's client/e2e/
// primitives.c (tests/vectors/README.md "Derivations"): X25519, HMAC-SHA256
// and HKDF-SHA256 from it, ChaCha20-Poly1305 IETF with key and nonce from
// HKDF of the one-use message key.
import { concat } from './bytes';
import { E2EError, E2EStatus } from './errors';
import { sodium } from './sodium';

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

// Randomness: libsodium's, or (unit tests only) a fixed sequence, so the
// vectors' "random values in the order used" can be replayed.
let testRng: ((len: number) => Uint8Array) | null = null;
export function setTestRng(fn: ((len: number) => Uint8Array) | null): void { testRng = fn; }
export function random(len: number): Uint8Array {
  return testRng ? testRng(len) : sodium().randombytes_buf(len);
}

export interface DHPair { pk: Uint8Array; sk: Uint8Array }

export function dhKeypair(): DHPair {
  const sk = random(32);
  return { pk: sodium().crypto_scalarmult_base(sk), sk };
}

/** X25519; an all-zero (low-order) result is refused, as libsodium does. */
export function dh(sk: Uint8Array, pk: Uint8Array): Uint8Array {
  try {
    return sodium().crypto_scalarmult(sk, pk);
  } catch {
    throw new E2EError(E2EStatus.BAD_BUNDLE);
  }
}

export function identityX25519Public(edPk: Uint8Array): Uint8Array {
  try {
    return sodium().crypto_sign_ed25519_pk_to_curve25519(edPk);
  } catch {
    throw new E2EError(E2EStatus.BAD_BUNDLE);
  }
}

export function identityX25519Secret(edSk: Uint8Array): Uint8Array {
  return sodium().crypto_sign_ed25519_sk_to_curve25519(edSk);
}

export function hmac(key: Uint8Array, msg: Uint8Array): Uint8Array {
  const s = sodium();
  const st = s.crypto_auth_hmacsha256_init(key);
  s.crypto_auth_hmacsha256_update(st, msg);
  return s.crypto_auth_hmacsha256_final(st);
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
  return sodium().crypto_aead_chacha20poly1305_ietf_encrypt(pt, ad, null, nonce, key);
}

export function open(ct: Uint8Array, ad: Uint8Array, mk: Uint8Array, info: string): Uint8Array {
  if (ct.length < AEAD_TAG) throw new E2EError(E2EStatus.MALFORMED);
  const [key, nonce] = aeadKeys(mk, info);
  try {
    return sodium().crypto_aead_chacha20poly1305_ietf_decrypt(null, ct, ad, nonce, key);
  } catch {
    throw new E2EError(E2EStatus.AUTH);
  }
}
