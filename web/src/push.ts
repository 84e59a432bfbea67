// Web Push, the page's side: registers the service worker (/sw.js), and
// the "Notifications" toggle: permission, pushManager.subscribe with the
// server's VAPID key, PushRegister with the subscription's endpoint and
// keys; off = unsubscribe and PushUnregister. What the service worker
// shares with the page is in push-shared.ts.
import { create } from '@bufbuild/protobuf';
export { OPEN_MESSAGE, saveConversationNames, conversationOfHash } from './push-shared';
import { PushGetKeySchema, PushRegisterSchema, PushUnregisterSchema, type Frame, type Response } from './proto';

export const MAX_ENDPOINT_BYTES = 1024;    // the server's bound (PushRegister)
const P256_POINT_BYTES = 65;
const AUTH_BYTES = 16;

export type Requester = (body: Frame['body']) => Promise<Response>;

/** What the toggle needs of a PushSubscription (a stub in the unit tests). */
export interface SubscriptionLike {
  endpoint: string;
  getKey(name: 'p256dh' | 'auth'): ArrayBuffer | null;
}

/** The PushRegister body for a subscription, checked against the server's
 * bounds first: a bad one is refused here with a reason, not sent. */
export function pushRegisterBody(sub: SubscriptionLike): Frame['body'] {
  const endpoint = sub.endpoint;
  if (!endpoint.startsWith('https://')) throw new Error('push subscription endpoint is not https');
  if (new TextEncoder().encode(endpoint).length > MAX_ENDPOINT_BYTES) throw new Error('push subscription endpoint is too long');
  const p256 = sub.getKey('p256dh');
  const auth = sub.getKey('auth');
  if (!p256 || p256.byteLength !== P256_POINT_BYTES) throw new Error('push subscription p256dh is not a 65-byte P-256 point');
  if (!auth || auth.byteLength !== AUTH_BYTES) throw new Error('push subscription auth is not 16 bytes');
  return { case: 'pushRegister', value: create(PushRegisterSchema, {
    endpoint, p256dh: new Uint8Array(p256.slice(0)), auth: new Uint8Array(auth.slice(0)) }) };
}

export const pushUnregisterBody = (): Frame['body'] => ({ case: 'pushUnregister', value: create(PushUnregisterSchema, {}) });

/** The server's VAPID public key: the one from the sign-in answer, else PushGetKey. */
export async function vapidKey(request: Requester, fromSignIn: Uint8Array | null): Promise<Uint8Array> {
  if (fromSignIn && fromSignIn.length === P256_POINT_BYTES) return fromSignIn;
  const r = await request({ case: 'pushGetKey', value: create(PushGetKeySchema, {}) });
  const key = r.result.case === 'pushKey' ? r.result.value.vapidPublicKey : null;
  if (!key || key.length !== P256_POINT_BYTES) throw new Error('the server has no push key (is --push off?)');
  return key;
}

export function supported(): boolean {
  return typeof navigator !== 'undefined' && 'serviceWorker' in navigator && typeof PushManager !== 'undefined' &&
    typeof Notification !== 'undefined';
}

/** Registers /sw.js (scope /). Failure leaves the app working without push. */
export async function registerWorker(): Promise<ServiceWorkerRegistration | null> {
  if (!supported()) return null;
  return navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch(() => null);
}

/** Is there a subscription (the toggle's state)? */
export async function isEnabled(): Promise<boolean> {
  if (!supported()) return false;
  const reg = await navigator.serviceWorker.getRegistration('/');
  return !!(reg && (await reg.pushManager.getSubscription()));
}

/** The toggle on: permission, subscribe with the server's key, PushRegister. */
export async function enable(request: Requester, signInKey: Uint8Array | null): Promise<void> {
  if (!supported()) throw new Error('this browser has no Web Push');
  if ((await Notification.requestPermission()) !== 'granted') throw new Error('notifications are not allowed for this page');
  const key = await vapidKey(request, signInKey);
  const reg = await navigator.serviceWorker.ready;
  let sub = await reg.pushManager.getSubscription();
  // a subscription made with another server key is useless to this server
  const old = sub?.options.applicationServerKey;
  if (sub && old && !sameBytes(new Uint8Array(old), key)) { await sub.unsubscribe(); sub = null; }
  sub ??= await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key as BufferSource });
  await request(pushRegisterBody(sub));
}

/** The toggle off: PushUnregister, then unsubscribe at the push service. */
export async function disable(request: Requester): Promise<void> {
  await request(pushUnregisterBody());
  const reg = supported() ? await navigator.serviceWorker.getRegistration('/') : undefined;
  const sub = reg ? await reg.pushManager.getSubscription() : null;
  if (sub) await sub.unsubscribe();
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

