// The reasons a message cannot be read, with libparley's codes and words
// (client/e2e/primitives.c e2e_strerror), so both clients say the same.

export enum E2EStatus {
  MALFORMED = -1, AUTH = -2, REPLAY = -3, TOO_FAR = -4, BAD_BUNDLE = -5, NOMEM = -6,
  VERSION = -7, TOO_LARGE = -8, WRONG_KEY = -9, IDENTITY_CHANGED = -10,
}

const TEXT: Record<E2EStatus, string> = {
  [E2EStatus.MALFORMED]: 'malformed: not an encrypted message or state of this version',
  [E2EStatus.AUTH]: 'does not authenticate: tampered with, or not encrypted for this device',
  [E2EStatus.REPLAY]: 'its key was already used or discarded: a replay or a message too old',
  [E2EStatus.TOO_FAR]: 'too many messages skipped',
  [E2EStatus.BAD_BUNDLE]: "the peer's signed pre-key signature does not verify, or a key is unusable",
  [E2EStatus.NOMEM]: 'out of memory',
  [E2EStatus.VERSION]: 'saved state of an unknown version',
  [E2EStatus.TOO_LARGE]: 'message too large',
  [E2EStatus.WRONG_KEY]: 'sender key not held (not distributed to this device, or rotated)',
  [E2EStatus.IDENTITY_CHANGED]: 'refused: this peer device now presents another identity key than before ' +
    "(a device's key never changes: someone may be impersonating it)",
};

export class E2EError extends Error {
  constructor(readonly status: E2EStatus) {
    super(TEXT[status] ?? 'unknown error');
  }
}
