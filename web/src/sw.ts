// The service worker, served at /sw.js (scope /): shows a notification for
// a Web Push message and, on a click, brings the app to the conversation.
// The payload (decrypted by the browser, RFC 8291) is JSON naming a
// conversation id and a count; only the id is used, and the notification
// says "New message" plus the conversation's name if the page has cached
// it (push-shared.ts) -- nothing else from the payload is ever shown.
import { OPEN_MESSAGE, conversationName, conversationOfPayload, conversationUrl } from './push-shared';

// The few service-worker types used here (tsconfig's lib is the page's "dom").
interface ExtendableEvent extends Event { waitUntil(p: Promise<unknown>): void }
interface PushEvent extends ExtendableEvent { data: { text(): string } | null }
interface NotificationEvent extends ExtendableEvent { notification: Notification }
interface WindowClient { url: string; focus(): Promise<WindowClient>; navigate(url: string): Promise<WindowClient | null>; postMessage(m: unknown): void }
interface SwScope {
  registration: ServiceWorkerRegistration;
  clients: {
    matchAll(o: { type: 'window'; includeUncontrolled: boolean }): Promise<WindowClient[]>;
    openWindow(url: string): Promise<WindowClient | null>;
    claim(): Promise<void>;
  };
  skipWaiting(): Promise<void>;
  addEventListener(type: string, fn: (e: never) => void): void;
  location: Location;
}
const sw = self as unknown as SwScope;

async function show(e: PushEvent): Promise<void> {
  let text: string | null = null;
  try { text = e.data ? e.data.text() : null; } catch { text = null; }
  const id = conversationOfPayload(text);
  const name = id ? await conversationName(id).catch(() => null) : null;
  await sw.registration.showNotification('New message', {
    body: name ?? '',
    tag: id ? `c${id}` : 'parley',    // one notification per conversation, replaced by the next
    data: { conversationId: id },
  });
}

async function open(e: NotificationEvent): Promise<void> {
  const data = e.notification.data as { conversationId?: unknown } | null;
  const id = typeof data?.conversationId === 'string' && /^[1-9][0-9]{0,19}$/.test(data.conversationId) ? data.conversationId : null;
  e.notification.close();
  const origin = sw.location.origin;
  const wins = (await sw.clients.matchAll({ type: 'window', includeUncontrolled: true }))
    .filter((c) => new URL(c.url).origin === origin);
  const win = wins[0];
  if (!win) { await sw.clients.openWindow(conversationUrl(id)); return; }
  // the open page switches conversation itself (no reload: it keeps its
  // connection); focusing may be refused without a user's click, which is fine
  win.postMessage({ type: OPEN_MESSAGE, conversationId: id });
  await win.focus().catch(() => undefined);
}

sw.addEventListener('install', () => void sw.skipWaiting());
sw.addEventListener('activate', (e: ExtendableEvent) => e.waitUntil(sw.clients.claim()));
sw.addEventListener('push', (e: PushEvent) => e.waitUntil(show(e)));
sw.addEventListener('notificationclick', (e: NotificationEvent) => e.waitUntil(open(e)));
