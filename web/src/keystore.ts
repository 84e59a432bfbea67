// What this browser keeps between visits, in IndexedDB (one small
// key-value store): the device identity (user and device id, the
// non-extractable private key), the end-to-end key store, the sync cursor, and the names this user
// has typed for other users (the protocol resolves a name to an id, not
// back, so a name is known here only once looked up).

const DB_NAME = 'parley';
const STORE = 'kv';

export interface Identity {
  userId: bigint;
  deviceId: number;
  userName: string;
  privateKey: CryptoKey;
  publicRaw: Uint8Array;
}

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

let dbPromise: Promise<IDBDatabase> | null = null;
function db(): Promise<IDBDatabase> {
  dbPromise ??= open();
  return dbPromise;
}

async function get<T>(key: string): Promise<T | undefined> {
  const d = await db();
  return new Promise((resolve, reject) => {
    const req = d.transaction(STORE, 'readonly').objectStore(STORE).get(key);
    req.onsuccess = () => resolve(req.result as T | undefined);
    req.onerror = () => reject(req.error);
  });
}

async function put(key: string, value: unknown): Promise<void> {
  const d = await db();
  return new Promise((resolve, reject) => {
    const tx = d.transaction(STORE, 'readwrite');
    tx.objectStore(STORE).put(value, key);
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
  });
}

export const loadIdentity = () => get<Identity>('identity');
export const saveIdentity = (id: Identity) => put('identity', id);
export const loadCursor = async () => (await get<bigint>('cursor')) ?? 0n;
export const saveCursor = (c: bigint) => put('cursor', c);
export const loadNames = async () => (await get<Map<bigint, string>>('names')) ?? new Map<bigint, string>();
export const saveNames = (m: Map<bigint, string>) => put('names', m);
// the end-to-end key store (private keys, sessions, sender keys) and the
// plaintexts decrypted so far: one object, written whole (encryption.ts)
export const loadE2E = <T>() => get<T>('e2e');
export const saveE2E = (v: unknown) => put('e2e', v);

/** Forgets this browser's device: identity, cursor and names. */
export async function forgetAll(): Promise<void> {
  const d = await db();
  return new Promise((resolve, reject) => {
    const tx = d.transaction(STORE, 'readwrite');
    tx.objectStore(STORE).clear();
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
  });
}
