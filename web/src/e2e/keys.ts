// A device's long-term keys and X3DH, as client/e2e/keys.c: the identity is
// an Ed25519 key pair, converted to X25519 for the agreements; the signed
// pre-key's signature is Ed25519 over its 32-byte X25519 public key.
import { concat } from './bytes';
import { E2EError, E2EStatus } from './errors';
import { INFO_X3DH, dh, dhKeypair, hkdf, identityX25519Public, identityX25519Secret, random } from './primitives';
import { ed25519SeedKeypair, ed25519Sign, ed25519Verify } from './curve';

export interface Identity { pk: Uint8Array; sk: Uint8Array /* 64: seed || pk */ }
export interface PreKey { id: number; pk: Uint8Array; sk: Uint8Array }
export interface Bundle {
  identity: Uint8Array; spkId: number; spk: Uint8Array; spkSig: Uint8Array;
  otk?: { id: number; pk: Uint8Array };
}

export function identityFromSeed(seed: Uint8Array): Identity {
  const kp = ed25519SeedKeypair(seed);
  return { pk: kp.publicKey, sk: kp.privateKey };
}

export function identityGenerate(): Identity { return identityFromSeed(random(32)); }

export function prekeyGenerate(id: number): PreKey {
  const { pk, sk } = dhKeypair();
  return { id, pk, sk };
}

export function prekeySign(id: Identity, spk: PreKey): Uint8Array {
  return ed25519Sign(spk.pk, id.sk);
}

const F = new Uint8Array(32).fill(0xff);

function kdf(dhs: Uint8Array[]): Uint8Array {
  return hkdf(32, null, concat(F, ...dhs), INFO_X3DH);
}

/** The initiator's SK; BAD_BUNDLE if the signed pre-key's signature fails. */
export function x3dhInitiate(me: Identity, ekSk: Uint8Array, peer: Bundle): Uint8Array {
  if (!ed25519Verify(peer.spkSig, peer.spk, peer.identity))
    throw new E2EError(E2EStatus.BAD_BUNDLE);
  const ik = identityX25519Secret(me.sk);
  const peerIk = identityX25519Public(peer.identity);
  const dhs = [dh(ik, peer.spk), dh(ekSk, peerIk), dh(ekSk, peer.spk)];
  if (peer.otk) dhs.push(dh(ekSk, peer.otk.pk));
  return kdf(dhs);
}

export function x3dhRespond(me: Identity, spk: PreKey, otk: PreKey | null, peerIdentity: Uint8Array,
                            peerEk: Uint8Array): Uint8Array {
  const ik = identityX25519Secret(me.sk);
  const peerIk = identityX25519Public(peerIdentity);
  const dhs = [dh(spk.sk, peerIk), dh(ik, peerEk), dh(spk.sk, peerEk)];
  if (otk) dhs.push(dh(otk.sk, peerEk));
  return kdf(dhs);
}
