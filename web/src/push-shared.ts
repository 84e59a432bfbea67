// What the page and the service worker (sw.ts) share, with no protocol
// code in it (the worker is a small script of its own): the names of
// conversations, kept by the page in an IndexedDB store of their own
// ('parley-push', apart from the device's keys) so the worker can title a
// notification, since a push payload names only a conversation id and a
// count; the reading of that payload; and the URL a click opens.

export const NAMES_DB = 'parley-push';
const NAMES_STORE = 'conv-names';
const MAX_CACHED_NAMES = 1000;
const MAX_NAME_CHARS = 128;

/** The message a page gets from the worker when a notification of a conversation is clicked. */
export const OPEN_MESSAGE = 'parley-open-conversation';

export function openNames(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(NAMES_DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(NAMES_STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** Replaces the cached names (conversation id as a decimal string -> title). */
export async function saveConversationNames(names: Map<string, string>): Promise<void> {
  if (typeof indexedDB === 'undefined') return;
  const d = await openNames();
  try {
    await new Promise<void>((resolve, reject) => {
      const tx = d.transaction(NAMES_STORE, 'readwrite');
      const st = tx.objectStore(NAMES_STORE);
      st.clear();
      let n = 0;
      for (const [id, name] of names) if (n++ < MAX_CACHED_NAMES) st.put(name.slice(0, MAX_NAME_CHARS), id);
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
    });
  } finally {
    d.close();
  }
}

export async function conversationName(id: string): Promise<string | null> {
  const d = await openNames();
  try {
    return await new Promise<string | null>((resolve, reject) => {
      const req = d.transaction(NAMES_STORE, 'readonly').objectStore(NAMES_STORE).get(id);
      req.onsuccess = () => resolve(typeof req.result === 'string' ? req.result : null);
      req.onerror = () => reject(req.error);
    });
  } finally {
    d.close();
  }
}

// ------------------------------------------------ notification payload

/** A conversation id from a push payload: only {"conversation_id":"DIGITS"}
 * is taken, everything else in it is ignored (the payload names no more). */
export function conversationOfPayload(text: string | null): string | null {
  if (!text || text.length > 4096) return null;
  let v: unknown;
  try { v = JSON.parse(text); } catch { return null; }
  const id = (v as { conversation_id?: unknown } | null)?.conversation_id;
  return typeof id === 'string' && /^[1-9][0-9]{0,19}$/.test(id) ? id : null;
}

/** Where a click on a notification takes the user: the app, at the conversation. */
export const conversationUrl = (id: string | null) => (id ? `/#c=${id}` : '/');

/** The conversation named by a location hash (#c=ID), if any. */
export function conversationOfHash(hash: string): bigint | null {
  const m = /^#c=([1-9][0-9]{0,19})$/.exec(hash);
  return m ? BigInt(m[1]) : null;
}
