// libsodium (the wasm build of the same C library libparley links), loaded
// once. Every other e2e module calls sodium() after ready() has resolved.
import _sodium from 'libsodium-wrappers-sumo';

let lib: typeof _sodium | null = null;

export async function ready(): Promise<void> {
  if (lib) return;
  await _sodium.ready;
  lib = _sodium;
}

export function sodium(): typeof _sodium {
  if (!lib) throw new Error('e2e: libsodium not ready (await ready() first)');
  return lib;
}
