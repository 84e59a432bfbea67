// Device keys and the sign-in proof, as libparley does them (client/identity.c):
// an Ed25519 key pair per device, and a signature over
//   "parley.v1 auth" || the 32-byte challenge nonce || the Host header
// of the upgrade request. A browser sends location.host as Host, so that is
// what it signs. The private key is made non-extractable by WebCrypto and
// kept as a CryptoKey in IndexedDB: page scripts can use it, never read it.

const CONTEXT = new TextEncoder().encode('parley.v1 auth');
export const NONCE_BYTES = 32;
export const HOST_MAX = 255;

export function authMessage(nonce: Uint8Array, host: string): Uint8Array {
  if (nonce.length !== NONCE_BYTES) throw new Error('challenge nonce must be 32 bytes');
  const h = new TextEncoder().encode(host);
  if (h.length > HOST_MAX) throw new Error('host too long');
  const msg = new Uint8Array(CONTEXT.length + NONCE_BYTES + h.length);
  msg.set(CONTEXT, 0);
  msg.set(nonce, CONTEXT.length);
  msg.set(h, CONTEXT.length + NONCE_BYTES);
  return msg;
}

export interface DeviceKeys {
  privateKey: CryptoKey;
  publicRaw: Uint8Array; // 32 bytes
}

export async function newDeviceKeys(subtle: SubtleCrypto = crypto.subtle): Promise<DeviceKeys> {
  const pair = (await subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
  const publicRaw = new Uint8Array(await subtle.exportKey('raw', pair.publicKey));
  return { privateKey: pair.privateKey, publicRaw };
}

export async function signChallenge(key: CryptoKey, nonce: Uint8Array, host: string,
                                    subtle: SubtleCrypto = crypto.subtle): Promise<Uint8Array> {
  const msg = authMessage(nonce, host);
  return new Uint8Array(await subtle.sign({ name: 'Ed25519' }, key, msg as BufferSource));
}
