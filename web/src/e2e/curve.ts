// The primitives underneath, from the audited pure-JS noble libraries
// (@noble/curves, @noble/hashes, @noble/ciphers): the same algorithms
// libsodium gives libparley, checked byte for byte by the shared vectors.
// Why not libsodium-wrappers: it is WebAssembly only, and the page's
// Content-Security-Policy (the server's header, default-src 'self') does
// not allow compiling WebAssembly ('wasm-unsafe-eval'); pure JS needs no
// exception to it.
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';

export const randomBytes = (n: number): Uint8Array => crypto.getRandomValues(new Uint8Array(n));

/** X25519 public key of a private key (clamped, as crypto_scalarmult_base). */
export const x25519Base = (sk: Uint8Array): Uint8Array => x25519.getPublicKey(sk);

/** X25519; throws on a low-order point (an all-zero result), as crypto_scalarmult fails. */
export const x25519Dh = (sk: Uint8Array, pk: Uint8Array): Uint8Array => x25519.getSharedSecret(sk, pk);

/** crypto_sign_seed_keypair: the 64-byte secret is seed || public key. */
export function ed25519SeedKeypair(seed: Uint8Array): { publicKey: Uint8Array; privateKey: Uint8Array } {
  const publicKey = ed25519.getPublicKey(seed);
  const privateKey = new Uint8Array(64);
  privateKey.set(seed, 0);
  privateKey.set(publicKey, 32);
  return { publicKey, privateKey };
}

export const ed25519Sign = (msg: Uint8Array, sk64: Uint8Array): Uint8Array => ed25519.sign(msg, sk64.subarray(0, 32));

/** Strict RFC 8032 decoding (zip215 off), nearer libsodium's checks. */
export function ed25519Verify(sig: Uint8Array, msg: Uint8Array, pk: Uint8Array): boolean {
  try {
    return ed25519.verify(sig, msg, pk, { zip215: false });
  } catch {
    return false;
  }
}

/** crypto_sign_ed25519_pk_to_curve25519: the Montgomery u of the Edwards point. */
export const ed25519PkToX25519 = (pk: Uint8Array): Uint8Array => ed25519.utils.toMontgomery(pk);

/** crypto_sign_ed25519_sk_to_curve25519: SHA-512(seed)[0:32], clamped. */
export const ed25519SkToX25519 = (sk64: Uint8Array): Uint8Array => ed25519.utils.toMontgomerySecret(sk64.subarray(0, 32));

export const hmacSha256 = (key: Uint8Array, msg: Uint8Array): Uint8Array => hmac(sha256, key, msg);

export const aeadSeal = (key: Uint8Array, nonce: Uint8Array, pt: Uint8Array, ad: Uint8Array): Uint8Array =>
  chacha20poly1305(key, nonce, ad).encrypt(pt);

/** Throws when the tag does not verify. */
export const aeadOpen = (key: Uint8Array, nonce: Uint8Array, ct: Uint8Array, ad: Uint8Array): Uint8Array =>
  chacha20poly1305(key, nonce, ad).decrypt(ct);
