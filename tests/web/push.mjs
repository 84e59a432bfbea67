// Web Push in the browser client, in headless Chromium (playwright-core,
// Debian's chromium) against a real `parley serve` on a free loopback port:
//   - /sw.js is served no-cache as JavaScript, registered by the app, and
//     active (controlling the page);
//   - the Notifications toggle subscribes with the server's VAPID key and
//     sends PushRegister; the server keeps the subscription: with the page
//     closed, a message from another user makes the server try a push to
//     its endpoint; the page opened again registers it again at sign-in;
//     off = PushUnregister and unsubscribe.
//     Headless Chromium has no push service here: pushManager.subscribe
//     answers "AbortError: Registration failed - permission denied" even
//     with the permission granted, so the page's PushManager is replaced
//     by a stub that makes a subscription object with a real P-256 key and
//     an endpoint on a closed loopback port (web/test/push.test.ts checks
//     the request too);
//   - a push delivered to the real service worker with CDP
//     ServiceWorker.deliverPushMessage shows a notification "New message"
//     with the conversation's cached name and nothing else of the payload;
//     a click on it (a notificationclick dispatched in the worker: headless
//     Chromium has no notification to click) opens the conversation in the
//     open page; /#c=ID, the URL the worker opens when no page is, opens it too.
// Env: PARLEY_BIN, PARLEY_CLI, CHROMIUM.
import { createRequire } from 'node:module';
import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, Server, cli, freePort, runBrowserTest, runCase, waitFor } from './lib.mjs';

const require = createRequire(join(ROOT, 'web/package.json'));
const { chromium } = require('playwright-core');

const BIN = process.env.PARLEY_BIN || join(ROOT, 'build/parley');
const CLI = process.env.PARLEY_CLI || join(ROOT, 'build/parley-cli');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WEB_ROOT = join(ROOT, 'web/dist');

const suffix = Date.now().toString(36).slice(-5);
const names = { alice: `alice_${suffix}`, bob: `bob_${suffix}` };
const server = new Server({ bin: BIN, webRoot: WEB_ROOT });
const cliState = mkdtempSync(join(tmpdir(), 'parley-web-push-cli-'));
const bobCli = (args) => cli(CLI, server, cliState, args);
let browser, context, page, conv;

/** Replaces the page's PushManager (installed before any page script
 * runs). The subscription is kept in localStorage, as a browser keeps a
 * real one across visits; PushRegister frames the page sends (they hold
 * the endpoint's bytes) are counted. */
function stubPushManager(endpoint) {
  const state = { keys: [], unsubscribed: 0, registersSent: 0 };
  window.__pushStub = state;
  const SAVED = '__pushStubSubscription';
  const make = (key, p256dh, auth) => ({ endpoint, options: { userVisibleOnly: true, applicationServerKey: Uint8Array.from(key).buffer },
    getKey: (n) => (n === 'p256dh' ? Uint8Array.from(p256dh).buffer : n === 'auth' ? Uint8Array.from(auth).buffer : null),
    unsubscribe: async () => { state.unsubscribed++; localStorage.removeItem(SAVED); return true; } });
  PushManager.prototype.subscribe = async function (o) {
    const key = Array.from(new Uint8Array(o.applicationServerKey));
    state.keys.push(key);
    const kp = await crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, ['deriveBits']);
    const p256dh = Array.from(new Uint8Array(await crypto.subtle.exportKey('raw', kp.publicKey)));
    const auth = Array.from(crypto.getRandomValues(new Uint8Array(16)));
    localStorage.setItem(SAVED, JSON.stringify({ key, p256dh, auth }));
    return make(key, p256dh, auth);
  };
  PushManager.prototype.getSubscription = async function () {
    const saved = localStorage.getItem(SAVED);
    if (!saved) return null;
    const { key, p256dh, auth } = JSON.parse(saved);
    return make(key, p256dh, auth);
  };
  const ep = new TextEncoder().encode(endpoint);
  const holdsEndpoint = (b) => {
    for (let i = 0; i + ep.length <= b.length; i++) if (ep.every((x, j) => b[i + j] === x)) return true;
    return false;
  };
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    const b = data instanceof ArrayBuffer ? new Uint8Array(data) : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : null;
    if (b && holdsEndpoint(b)) state.registersSent++;
    return send.call(this, data);
  };
}

async function metric(name) {
  const text = await (await fetch(`${server.base}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

const currentConv = () => page.evaluate(() => window.parley.current?.toString() ?? null);
const toggleState = () => page.getAttribute('#push-toggle', 'data-state');
const pushStatus = () => page.textContent('#push-status');

async function openApp() {
  page = await context.newPage();
  page.on('pageerror', (e) => console.error(`  page error: ${e.message}`));
  await page.goto(server.base + '/');
}

async function waitSignedIn() {
  await waitFor('the page signed in', () => page.evaluate(() => window.parley.signedIn), 60_000);
}

async function setToggle(on) {
  await page.waitForSelector('#push-toggle:not([disabled])', { timeout: 30_000 });
  if (on) await page.check('#push-toggle'); else await page.uncheck('#push-toggle');
  await waitFor(`the toggle ${on ? 'on' : 'off'} (status: ${await pushStatus()})`, async () => (await toggleState()) === (on ? 'on' : 'off'));
  const why = await pushStatus();
  if (why) throw new Error(`toggle ${on ? 'on' : 'off'}: ${why}`);
}

async function main() {
  if (!existsSync(join(WEB_ROOT, 'sw.js'))) throw new Error(`no ${WEB_ROOT}/sw.js: make web first`);
  await server.start();
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  await context.grantPermissions(['notifications'], { origin: server.base });
  // nothing listens there: a push the server sends to it fails and is retried
  const endpoint = `https://127.0.0.1:${await freePort()}/push/stub-subscription`;
  await context.addInitScript(stubPushManager, endpoint);

  await runCase('sw_js_is_served_no_cache_and_registered_and_active', async () => {
    const r = await fetch(`${server.base}/sw.js`);
    if (r.status !== 200) throw new Error(`/sw.js: ${r.status}`);
    if (r.headers.get('cache-control') !== 'no-cache') throw new Error(`/sw.js Cache-Control: ${r.headers.get('cache-control')}`);
    if (!/javascript/.test(r.headers.get('content-type') ?? '')) throw new Error(`/sw.js Content-Type: ${r.headers.get('content-type')}`);
    await bobCli(['register', names.bob]);
    await openApp();
    await page.waitForSelector('#register-form', { state: 'visible', timeout: 30_000 });
    await page.fill('#register-form input[name=name]', names.alice);
    await page.click('#register-form button[type=submit]');
    await waitSignedIn();
    const sw = await waitFor('the service worker active and controlling the page', () => page.evaluate(async () => {
      const reg = await navigator.serviceWorker.getRegistration('/');
      return reg?.active?.state === 'activated' && navigator.serviceWorker.controller
        ? { script: reg.active.scriptURL, scope: reg.scope } : null;
    }));
    if (sw.script !== `${server.base}/sw.js` || sw.scope !== `${server.base}/`) throw new Error(`worker ${JSON.stringify(sw)}`);
  });

  await runCase('notifications_toggle_registers_the_subscription_and_off_unregisters', async () => {
    await page.fill('#direct-form input[name=peer]', names.bob);
    await page.click('#direct-form button[type=submit]');
    conv = await waitFor('alice\'s conversation with bob open', currentConv);
    await setToggle(true);
    const vapid = Buffer.from((await (await fetch(`${server.base}/push/vapid-public-key`)).text()).trim(), 'base64url');
    const keys = await page.evaluate(() => window.__pushStub.keys);
    if (keys.length !== 1 || !vapid.equals(Buffer.from(keys[0]))) throw new Error(`subscribed with ${JSON.stringify(keys)}, server key ${vapid.toString('hex')}`);
    // the server has the subscription: alice offline, bob writes, the server tries her endpoint
    const before = (await metric('parley_push_retried_total')) + (await metric('parley_push_failed_total'));
    await page.close();
    const bobConv = (await bobCli(['direct', names.alice])).trim();
    if (bobConv !== conv) throw new Error(`bob's conversation ${bobConv}, alice's ${conv}`);
    await bobCli(['accept', conv]);
    await bobCli(['send', conv, 'are you there']);
    await waitFor('a push attempted to alice\'s endpoint', async () =>
      (await metric('parley_push_retried_total')) + (await metric('parley_push_failed_total')) > before, 60_000);
    // the browser kept the subscription: the page opened again shows the
    // toggle on and registers it again at sign-in (it may have been renewed)
    await openApp();
    await waitSignedIn();
    await waitFor('the toggle on in the new page', async () => (await toggleState()) === 'on');
    await waitFor('PushRegister sent again at sign-in', () => page.evaluate(() => window.__pushStub.registersSent === 1));
    await setToggle(false);
    const stub = await page.evaluate(() => window.__pushStub);
    if (stub.unsubscribed !== 1 || stub.registersSent !== 1) throw new Error(`after off: ${JSON.stringify(stub)}`);
    if (await page.evaluate(() => navigator.serviceWorker.ready.then((r) => r.pushManager.getSubscription()))) throw new Error('still subscribed');
  });

  await runCase('a_push_shows_new_message_and_its_click_opens_the_conversation', async () => {
    // the page has cached the conversation's name for the worker; show the list, not the chat
    await waitFor('the conversation listed', () => page.isVisible(`#conv-list button.conv[data-conv="${conv}"]`));
    await page.evaluate(() => window.parley.openConversation(null));
    const cdp = await context.newCDPSession(page);
    const regs = [];
    const versions = [];
    cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => regs.push(...e.registrations));
    cdp.on('ServiceWorker.workerVersionUpdated', (e) => versions.push(...e.versions));
    await cdp.send('ServiceWorker.enable');
    const reg = await waitFor('the worker\'s registration id', () => regs.find((r) => r.scopeURL === `${server.base}/` && !r.isDeleted));
    // a push sent before the worker's version is activated can be dropped
    // by the browser (seen on a loaded CI machine): wait for it, and send
    // again if no notification came (the same tag: a second one replaces
    // the first, so the count below still says one)
    await waitFor('the worker activated', () => versions.some((v) => v.registrationId === reg.registrationId && v.status === 'activated'));
    const notifications = () => page.evaluate(async () => {
      const ns = await (await navigator.serviceWorker.ready).getNotifications();
      return ns.length ? ns.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data })) : null;
    });
    let shown = null;
    for (let attempt = 1; !shown && attempt <= 4; attempt++) {
      await cdp.send('ServiceWorker.deliverPushMessage', { origin: server.base, registrationId: reg.registrationId,
        data: JSON.stringify({ conversation_id: conv, count: 1, body: 'SECRET-NOT-SHOWN' }) });
      shown = await waitFor('the notification', notifications, 15_000).catch((e) => {
        if (attempt === 4) throw e;
        console.error(`    push attempt ${attempt}: ${e.message}; sending it again`);
        return null;
      });
    }
    const want = { title: 'New message', body: names.bob, tag: `c${conv}`, data: { conversationId: conv } };
    if (shown.length !== 1 || JSON.stringify(shown[0]) !== JSON.stringify(want)) throw new Error(`notifications ${JSON.stringify(shown)}`);
    if (await currentConv() !== null) throw new Error('a conversation is open before the click');
    const worker = await waitFor('the worker in playwright', () => context.serviceWorkers()[0]);
    await worker.evaluate(async () => {
      const [n] = await self.registration.getNotifications();
      self.dispatchEvent(new NotificationEvent('notificationclick', { notification: n }));
    });
    await waitFor('the conversation open after the click', async () => (await currentConv()) === conv && page.isVisible('#chat'));
    await waitFor('the notification closed', () => page.evaluate(async () =>
      (await (await navigator.serviceWorker.ready).getNotifications()).length === 0));
  });

  await runCase('the_url_the_worker_opens_goes_to_the_conversation', async () => {
    await page.close();
    page = await context.newPage();
    await page.goto(`${server.base}/#c=${conv}`);
    await waitFor('the conversation open from /#c=ID', async () => (await currentConv()) === conv && page.isVisible('#chat'), 60_000);
  });
}

await runBrowserTest(main, { server, cliState, getBrowser: () => browser });
