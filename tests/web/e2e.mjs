// The browser client end to end, in headless Chromium (Debian's chromium,
// driven by playwright-core) against a real `parley serve` on a free
// loopback port serving web/dist:
//   - two browsers register, open a direct conversation, exchange
//     messages; the sender's bubble goes sent -> delivered -> read from the
//     server's receipts; typing and presence show;
//   - a parley-cli user and both browsers in one group, both ways;
//   - end to end encrypted throughout: the browsers always encrypt; the
//     parley-cli user (carol) sends and syncs with --e2e; a browser user and
//     carol read each other in a direct conversation; a browser linked later
//     shows the older messages as undecryptable, with the reason; after the
//     run neither the server's data dir nor its log holds a plaintext;
//   - a browser that is closed misses messages (the other sees it last
//     seen) and, opened again, catches up in order, once each;
//   - the server is killed (kill -9) and restarted on the same port while
//     the browsers are open: they reconnect by themselves, a message sent
//     during the outage goes out once, and nothing is missing or doubled;
//   - no request of any page leaves 127.0.0.1:PORT, and none is even
//     attempted (the page's Content-Security-Policy would block it and
//     log it to the console, which counts as a failure here).
// Screenshots of the main views go to $PARLEY_WEB_TEST_OUT
// (default build/web-test-output). Env: PARLEY_BIN, PARLEY_CLI, CHROMIUM.
import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync, existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, Server, cli, runBrowserTest, runCase, waitFor } from './lib.mjs';

const require = createRequire(join(ROOT, 'web/package.json'));
const { chromium } = require('playwright-core');

const BIN = process.env.PARLEY_BIN || join(ROOT, 'build/parley');
const CLI = process.env.PARLEY_CLI || join(ROOT, 'build/parley-cli');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUT = process.env.PARLEY_WEB_TEST_OUT || join(ROOT, 'build/web-test-output');
const WEB_ROOT = join(ROOT, 'web/dist');
mkdirSync(OUT, { recursive: true });

const suffix = Date.now().toString(36).slice(-5);
const names = { alice: `alice_${suffix}`, bob: `bob_${suffix}`, carol: `carol_${suffix}` };

const server = new Server({ bin: BIN, webRoot: WEB_ROOT });
const cliState = mkdtempSync(join(tmpdir(), 'parley-web-cli-'));
const foreignRequests = [];
let browser;

function watchRequests(context) {
  const allowed = (url) => {
    const u = new URL(url);
    return u.hostname === '127.0.0.1' && u.port === String(server.port);
  };
  context.on('request', (r) => { if (!allowed(r.url())) foreignRequests.push(r.url()); });
  context.on('page', (p) => {
    p.on('websocket', (ws) => { if (!allowed(ws.url())) foreignRequests.push(ws.url()); });
    // the page's CSP blocks a load from elsewhere before it is a request: an attempt counts too
    p.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) foreignRequests.push(`blocked by CSP: ${m.text()}`); });
  });
}

/** Every regular file under dir (bounded: at most 10,000). */
function listFiles(dir, out = []) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (out.length >= 10_000) break;
    const p = join(dir, e.name);
    if (e.isDirectory()) listFiles(p, out);
    else if (e.isFile() && statSync(p).size < 512 * 1024 * 1024) out.push(p);
  }
  return out;
}

const openPages = new Set();

/** Screenshots of every open page after a failed case, for the log. */
async function shotsOnFailure(name, fn) {
  try {
    await fn();
  } catch (e) {
    let i = 0;
    for (const p of openPages) {
      const state = await p.evaluate(() => {
        const a = window.parley;
        return a ? JSON.stringify({ me: a.identity?.userName, current: a.current?.toString(), conn: a.connState,
          error: a.error, convs: [...a.convs.values()].map((c) => `${c.id}:${c.group ? 'group' : 'direct'}:${c.name}`) }) : 'no app';
      }).catch((err) => String(err));
      console.error(`  page ${i}: ${state}`);
      await p.screenshot({ path: join(OUT, `failed-${name}-${i++}.png`) }).catch(() => undefined);
    }
    throw e;
  }
}

async function newPage(viewport = { width: 1100, height: 760 }) {
  const context = await browser.newContext({ viewport });
  context.on('page', (p) => { openPages.add(p); p.on('close', () => openPages.delete(p)); });
  watchRequests(context);
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`  page error: ${e.message}`));
  return page;
}

const connState = (page) => page.getAttribute('#conn', 'data-state');
const waitConnected = (page, what) => waitFor(`${what} online`, async () => (await connState(page)) === 'connected', 60_000);

async function register(page, name) {
  await page.goto(server.base + '/');
  await page.waitForSelector('#register-form', { state: 'visible', timeout: 30_000 });
  await page.fill('#register-form input[name=name]', name);
  await page.click('#register-form button[type=submit]');
  await page.waitForSelector('#shell', { state: 'visible', timeout: 30_000 });
  await waitConnected(page, name);
}

/** The bubbles of the open conversation, in page order. */
const bubbles = (page) => page.$$eval('#messages li.bubble', (els) => els.map((e) => ({
  text: e.querySelector('.text')?.textContent ?? '',
  status: e.dataset.status ?? null,
  seq: e.dataset.seq ? Number(e.dataset.seq) : null,
  mine: e.classList.contains('mine'),
})));

const currentConv = (page) => page.evaluate(() => window.parley.current?.toString() ?? null);

/** Opens a conversation from the list with the keyboard (focus its item,
 * Enter): a mouse click goes to coordinates, and the list re-sorts as
 * previews arrive, so a click could land on a neighbour (seen once in
 * about twenty runs: bob's group chat was replaced by his direct one). */
async function openConv(page, conv) {
  const item = `#conv-list button.conv[data-conv="${conv}"]`;
  await page.waitForSelector(item, { timeout: 30_000 });
  await waitFor('the conversation open', async () => {
    if ((await currentConv(page)) !== conv) {
      const focused = await page.focus(item, { timeout: 5_000 }).then(() => true, () => false);
      if (focused) await page.keyboard.press('Enter');
    }
    return (await currentConv(page)) === conv && (await page.isVisible('#chat'));
  });
}

/** Opens conv and accepts it if it is a message request. */
async function acceptIfAsked(page, conv) {
  await openConv(page, conv);
  if (await page.isVisible('#accept')) {
    await page.click('#accept');
    await waitFor('the request accepted', async () => !(await page.isVisible('#accept')));
  }
}

async function send(page, text) {
  said(text);
  await page.focus('#compose');
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');   // keyboard only: the composer is a form
}

/** Waits until the bubble with this text is the only one and has status. */
async function waitStatus(page, text, statuses) {
  return waitFor(`"${text}" ${statuses.join('|')}`, async () => {
    const b = (await bubbles(page)).filter((x) => x.text === text);
    return b.length === 1 && statuses.includes(b[0].status) ? b[0] : null;
  }, 60_000);
}

/** Every text exactly once, in this order, with increasing seqs. */
function assertInOrderOnce(list, texts, who) {
  const seen = list.filter((b) => texts.includes(b.text));
  const got = seen.map((b) => b.text);
  if (JSON.stringify(got) !== JSON.stringify(texts)) throw new Error(`${who} shows ${JSON.stringify(got)}, expected ${JSON.stringify(texts)}`);
  for (let i = 1; i < seen.length; i++) {
    if (!(seen[i].seq > seen[i - 1].seq)) throw new Error(`${who}: seqs not increasing: ${seen.map((b) => b.seq)}`);
  }
}

const shot = (page, name) => page.screenshot({ path: join(OUT, `${name}.png`) });

let alice, bob, direct, group;

// carol is a parley-cli user; she sends and syncs end-to-end encrypted
const carol = (args) => cli(CLI, server, join(cliState, 'carol'), args);
const carolSend = (conv, text) => carol(['send', '--e2e', conv, text]);
const carolSync = (wait = '1') => carol(['sync', '--e2e', '--wait', wait]);
// every message text sent in this run: none may be found in the server's files
const plaintexts = new Set();
const said = (t) => { plaintexts.add(t); return t; };

const runCaseShots = (name, fn) => runCase(name, () => shotsOnFailure(name, fn));

async function main() {
  if (!existsSync(join(WEB_ROOT, 'index.html'))) throw new Error(`no ${WEB_ROOT}/index.html: make web first`);
  await server.start();
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });

  await runCaseShots('two_browsers_register_chat_with_ticks_typing_presence', async () => {
    alice = await newPage();
    bob = await newPage();
    await register(alice, names.alice);
    await register(bob, names.bob);
    await shot(alice, 'list-empty');
    await alice.fill('#direct-form input[name=peer]', names.bob);
    await alice.click('#direct-form button[type=submit]');
    direct = await waitFor('alice\'s direct conversation open', () => currentConv(alice));
    await send(alice, 'hello bob');
    const sent = await waitStatus(alice, 'hello bob', ['sent', 'delivered', 'read']);
    if (!(sent.seq > 0)) throw new Error(`no seq on the sent bubble: ${JSON.stringify(sent)}`);
    // bob's browser has it (its device acked it): delivered, not read, unread 1 in bob's list
    await waitStatus(alice, 'hello bob', ['delivered']);
    await waitFor('bob\'s unread count 1', async () =>
      (await bob.textContent(`#conv-list button.conv[data-conv="${direct}"] .unread`).catch(() => null)) === '1');
    await shot(bob, 'list-unread');
    await openConv(bob, direct);
    await waitFor('bob sees hello bob', async () => (await bubbles(bob)).some((b) => b.text === 'hello bob' && !b.mine));
    // a message request: the sender learns of the reading only once bob accepts
    await bob.click('#accept');
    await waitFor('the request accepted', async () => !(await bob.isVisible('#accept')));
    await send(alice, 'are you there');
    await waitFor('bob sees it in the open chat', async () => (await bubbles(bob)).some((b) => b.text === 'are you there'));
    await waitStatus(alice, 'are you there', ['read']);
    await waitStatus(alice, 'hello bob', ['read']);
    // bob's view of alice: she opened the conversation with him, so he may see her presence
    await waitFor('alice online in bob\'s chat header', async () => (await bob.textContent('#chat-presence')) === 'online');
    // typing, both ways through the server
    await bob.focus('#compose');
    await bob.keyboard.type('hi al');
    await waitFor('alice sees bob typing', async () => /is typing/.test(await alice.textContent('#typing')));
    await shot(alice, 'chat-typing');
    await bob.keyboard.type('ice');
    await bob.keyboard.press('Enter');
    await waitFor('alice sees the reply', async () => (await bubbles(alice)).some((b) => b.text === 'hi alice' && !b.mine));
    await waitStatus(bob, 'hi alice', ['read']);
    // bob accepted alice: now she may see his presence too
    await waitFor('bob online in alice\'s chat header', async () => (await alice.textContent('#chat-presence')) === 'online');
    await waitFor('bob\'s typing indicator gone', async () => (await alice.textContent('#typing')) === '');
    await shot(alice, 'chat-desktop');
  });

  await runCaseShots('a_parley_cli_user_in_a_group_with_two_browsers', async () => {
    if (!alice) throw new Error('needs the first case');
    await carol(['register', names.carol]);
    await alice.fill('#group-form input[name=name]', 'trio');
    await alice.fill('#group-form input[name=members]', `${names.bob}, ${names.carol}`);
    await alice.click('#group-form button[type=submit]');
    group = await waitFor('the group open', async () => { const c = await currentConv(alice); return c !== direct ? c : null; });
    // carol's parley-cli (libparley) asks GetDevices of every member, which
    // the server answers only for users who accepted her: bob accepts her
    // direct request first (alice added her, which is acceptance)
    const carolBob = (await carol(['direct', names.bob])).trim();
    await bob.evaluate(() => window.parley.refreshConversations());
    await acceptIfAsked(bob, carolBob);
    await openConv(bob, group);
    await carolSend(group, said('hello from the terminal'));
    await waitFor('alice sees carol\'s message', async () => (await bubbles(alice)).some((b) => b.text === 'hello from the terminal'));
    await waitFor('bob sees carol\'s message', async () => (await bubbles(bob)).some((b) => b.text === 'hello from the terminal'));
    await send(alice, 'hello carol');
    await waitStatus(alice, 'hello carol', ['sent', 'delivered', 'read']);
    const out = await waitFor('carol\'s parley-cli gets alice\'s message', async () => {
      const o = await carolSync();
      return o.includes('"text":"hello carol"') ? o : null;
    });
    if (out.split('\n').filter((l) => l.includes('"text":"hello carol"')).length !== 1) throw new Error(`carol got it more than once:\n${out}`);
    if (/undecryptable/.test(out.split('\n').filter((l) => !l.includes('sent from this device')).join('\n')))
      throw new Error(`carol could not decrypt something:\n${out}`);
    // the two browsers read each other in the group, and nothing shows as undecryptable
    await send(bob, 'bob to the trio');
    await waitFor('alice reads bob in the group', async () => (await bubbles(alice)).some((b) => b.text === 'bob to the trio' && !b.mine));
    for (const [who, page] of [['alice', alice], ['bob', bob]]) {
      const locked = await page.$$eval('#messages li.undecryptable', (els) => els.map((e) => e.textContent));
      if (locked.length) throw new Error(`${who} shows undecryptable bubbles: ${locked}`);
      const plain = (await bubbles(page)).filter((b) => /not encrypted/.test(b.text));
      if (plain.length) throw new Error(`${who} shows unencrypted messages: ${JSON.stringify(plain)}`);
    }
    await shot(alice, 'chat-group');
  });

  await runCaseShots('a_closed_browser_catches_up_in_order_once', async () => {
    if (!bob || !group) throw new Error('needs the earlier cases');
    const context = bob.context();
    await bob.close();
    const missed = ['missed 1', 'missed 2', 'missed 3', 'missed 4', 'missed 5'];
    for (const t of missed) await carolSend(group, said(t));
    // bob has no device online now: alice sees when he was last seen
    await openConv(alice, direct);
    await waitFor('bob last seen in alice\'s header', async () => /^last seen /.test(await alice.textContent('#chat-presence')));
    await shot(alice, 'presence-last-seen');
    bob = await context.newPage();
    await bob.goto(server.base + '/');
    await waitConnected(bob, 'bob again');
    await openConv(bob, group);
    await waitFor('bob has the five missed messages', async () => (await bubbles(bob)).filter((b) => missed.includes(b.text)).length >= 5);
    assertInOrderOnce(await bubbles(bob), ['hello from the terminal', 'hello carol', 'bob to the trio', ...missed], 'bob');
  });

  await runCaseShots('kill_9_and_restart_while_open_reconnects_and_catches_up', async () => {
    if (!alice || !bob || !group) throw new Error('needs the earlier cases');
    await openConv(alice, group);
    await server.killAndWait();
    await waitFor('alice shows offline', async () => (await connState(alice)) === 'offline');
    await waitFor('bob shows offline', async () => (await connState(bob)) === 'offline');
    await shot(alice, 'offline');
    await send(alice, 'sent while down');              // stays pending, goes out after the reconnect
    const pending = await waitStatus(alice, 'sent while down', ['pending']);
    if (pending.seq !== null) throw new Error('a seq without a server');
    await server.start();
    for (const t of ['after restart 1', 'after restart 2']) await carolSend(group, said(t));
    await waitConnected(alice, 'alice after the restart');
    await waitConnected(bob, 'bob after the restart');
    await waitStatus(alice, 'sent while down', ['sent', 'delivered', 'read']);
    const want = ['hello from the terminal', 'hello carol', 'bob to the trio', 'missed 1', 'missed 2', 'missed 3', 'missed 4', 'missed 5'];
    await waitFor('bob has everything', async () => {
      const t = (await bubbles(bob)).map((b) => b.text);
      return ['sent while down', 'after restart 1', 'after restart 2'].every((x) => t.includes(x));
    });
    await waitFor('alice has everything', async () => {
      const t = (await bubbles(alice)).map((b) => b.text);
      return ['after restart 1', 'after restart 2'].every((x) => t.includes(x));
    });
    for (const [who, page] of [['alice', alice], ['bob', bob]]) {
      const list = await bubbles(page);
      const rest = list.filter((b) => want.includes(b.text) || b.text.startsWith('after restart') || b.text === 'sent while down');
      const seqs = rest.map((b) => b.seq);
      if (new Set(seqs).size !== seqs.length || seqs.some((s, i) => i > 0 && !(s > seqs[i - 1])))
        throw new Error(`${who}: gaps, doubles or disorder: ${JSON.stringify(rest)}`);
      if (rest.length !== want.length + 3) throw new Error(`${who}: ${rest.length} messages, expected ${want.length + 3}: ${JSON.stringify(rest)}`);
    }
    await shot(bob, 'after-restart');
  });

  await runCaseShots('phone_width_shows_one_pane_and_is_keyboard_usable', async () => {
    if (!alice || !direct) throw new Error('needs the earlier cases');
    const context = alice.context();
    const phone = await context.newPage();
    await phone.setViewportSize({ width: 380, height: 740 });
    await phone.goto(server.base + '/');
    await waitConnected(phone, 'alice on a phone-sized page');
    await waitFor('the list', async () => await phone.isVisible(`#conv-list button.conv[data-conv="${direct}"]`));
    if (await phone.isVisible('#chat')) throw new Error('the chat pane shows beside the list at phone width');
    await phone.focus(`#conv-list button.conv[data-conv="${direct}"]`);
    await phone.keyboard.press('Enter');
    await waitFor('the chat', async () => (await phone.isVisible('#compose')) && !(await phone.isVisible('#sidebar')));
    if (await phone.isVisible('#add-form') || await phone.isVisible('#leave')) throw new Error('group controls shown in a direct conversation');
    await shot(phone, 'phone-chat');
    await phone.keyboard.press('Escape');
    await waitFor('back to the list', async () => await phone.isVisible('#sidebar'));
    await phone.close();
  });

  await runCaseShots('history_pages_backwards_as_the_user_scrolls_up', async () => {
    if (!alice) throw new Error('needs the first case');
    const out = await carol(['group', 'long', names.alice]);
    const long = out.trim();
    // carol's parley-cli asks GetDevices (answered for users who accepted her)
    await acceptIfAsked(alice, long);
    const texts = Array.from({ length: 70 }, (_, i) => `page ${i + 1}`);
    for (const t of texts) await carolSend(long, said(t));
    await waitFor('alice has page 70', async () => (await bubbles(alice)).some((b) => b.text === 'page 70'));
    // a fresh page: the first page and the older ones come from History, and
    // read from the plaintexts kept in IndexedDB (a sender key opens a message once)
    await alice.reload();
    await waitConnected(alice, 'alice reloaded');
    await openConv(alice, long);
    await waitFor('the newest page', async () => (await bubbles(alice)).some((b) => b.text === 'page 70'));
    const first = (await bubbles(alice)).filter((b) => texts.includes(b.text)).length;
    if (first >= 70) throw new Error(`the first page held all ${first} messages: nothing to page`);
    for (let i = 0; i < 20; i++) {
      if ((await bubbles(alice)).some((b) => b.text === 'page 1')) break;
      await alice.$eval('#messages', (el) => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); });
      await waitFor('an older page', async () => (await bubbles(alice)).filter((b) => texts.includes(b.text)).length > first || (await bubbles(alice)).some((b) => b.text === 'page 1'));
    }
    assertInOrderOnce(await bubbles(alice), texts, 'alice');
  });

  await runCaseShots('link_this_browser_as_another_device_with_a_typed_token', async () => {
    if (!alice || !direct) throw new Error('needs the first case');
    await alice.click('#link-button');
    const token = await waitFor('a link token', async () => (await alice.textContent('#link-token')).trim() || null);
    // shown as a QR code too (drawn in the page: no image is loaded)
    await waitFor('the link token\'s QR code', async () => await alice.isVisible('#link-token svg[role=img] path'));
    await shot(alice, 'link-token-qr');
    const alice2 = await newPage();
    await alice2.goto(server.base + '/');
    await alice2.waitForSelector('#link-form', { state: 'visible', timeout: 30_000 });
    await alice2.fill('#link-form input[name=token]', token);
    await alice2.fill('#link-form input[name=name]', names.alice);
    await alice2.click('#link-form button[type=submit]');
    await waitConnected(alice2, 'alice\'s second browser');
    const ids = await alice.evaluate(() => window.parley.identity.userId.toString() + '/' + window.parley.identity.deviceId);
    const ids2 = await alice2.evaluate(() => window.parley.identity.userId.toString() + '/' + window.parley.identity.deviceId);
    if (ids.split('/')[0] !== ids2.split('/')[0] || ids === ids2) throw new Error(`not another device of the same user: ${ids} vs ${ids2}`);
    await openConv(alice2, direct);
    // end to end: the new device was given no key for what came before it;
    // the history is there, each message shown as undecryptable with the reason
    await openConv(alice, direct);
    const helloSeq = (await waitStatus(alice, 'hello bob', ['read'])).seq;
    await waitFor('the history on the new device, undecryptable', async () => (await bubbles(alice2)).some((b) =>
      b.seq === helloSeq && b.mine && /^🔒 cannot be decrypted: .+/.test(b.text)));
    await shot(alice2, 'history-undecryptable');
    await openConv(alice, direct);
    await send(alice2, 'from my second browser');
    await waitFor('bob gets it', async () => {
      await openConv(bob, direct);
      return (await bubbles(bob)).some((b) => b.text === 'from my second browser' && !b.mine);
    });
    await waitFor('alice\'s first browser shows it as hers', async () => (await bubbles(alice)).some((b) => b.text === 'from my second browser' && b.mine));
    await alice2.context().close();
  });

  await runCaseShots('groups_create_add_and_leave', async () => {
    if (!alice || !bob) throw new Error('needs the first case');
    await alice.fill('#group-form input[name=name]', 'club');
    await alice.fill('#group-form input[name=members]', names.bob);
    await alice.click('#group-form button[type=submit]');
    const club = await waitFor('the club open', async () => {
      const c = await currentConv(alice);
      return c && (await alice.textContent('#chat-title')) === 'club' ? c : null;
    });
    await alice.fill('#add-form input[name=member]', names.carol);
    await alice.click('#add-form button[type=submit]');
    await waitFor('carol added', async () => (await alice.textContent('#messages')).includes(`added ${names.carol}`));
    await waitFor('three members', async () => (await alice.textContent('#chat-presence')) === '3 members');
    // The view has been seen to move back to bob's direct conversation
    // between openConv and the click (CI, session 13: current 60, not the
    // club; not understood yet), leaving Leave hidden: open and click again
    // until the click lands, and say so when it had to.
    let tries = 0;
    await waitFor('bob clicks Leave in the club', async () => {
      if (tries++ > 0) console.error(`  bob's view was on ${await currentConv(bob)}, not the club: opened again`);
      await openConv(bob, club);
      return bob.click('#leave', { timeout: 2_000 }).then(() => true, () => false);
    });
    await waitFor('the club gone from bob\'s list', async () => !(await bob.isVisible(`#conv-list button.conv[data-conv="${club}"]`)));
    await waitFor('alice sees bob leave', async () => (await alice.textContent('#messages')).includes(`${names.bob} left`));
    await waitFor('two members', async () => (await alice.textContent('#chat-presence')) === '2 members');
  });

  await runCaseShots('a_browser_and_a_parley_cli_user_read_each_other_encrypted_in_a_direct_conversation', async () => {
    if (!alice) throw new Error('needs the first case');
    const dm = (await carol(['direct', names.alice])).trim();
    await carolSend(dm, said('carol to alice, encrypted'));
    await openConv(alice, dm);
    await waitFor('alice reads carol', async () => (await bubbles(alice)).some((b) => b.text === 'carol to alice, encrypted' && !b.mine));
    await send(alice, 'alice to carol, encrypted');
    await waitStatus(alice, 'alice to carol, encrypted', ['sent', 'delivered', 'read']);
    const out = await waitFor('carol reads alice', async () => {
      const o = await carolSync();
      return o.includes('"text":"alice to carol, encrypted"') ? o : null;
    });
    if (out.split('\n').filter((l) => l.includes('alice to carol, encrypted')).length !== 1) throw new Error(`not once:\n${out}`);
    // and on: the second message each way rides the established sessions and keys
    await carolSend(dm, said('carol again'));
    await waitFor('alice reads carol again', async () => (await bubbles(alice)).some((b) => b.text === 'carol again' && !b.mine));
    await send(alice, 'alice again');
    await waitFor('carol reads alice again', async () => (await carolSync()).includes('"text":"alice again"'));
    await shot(alice, 'chat-encrypted-with-cli');
  });

  await runCaseShots('the_servers_data_dir_and_log_hold_no_plaintext', async () => {
    if (plaintexts.size < 10) throw new Error(`only ${plaintexts.size} texts were sent: the earlier cases did not run`);
    const files = listFiles(server.dir);
    if (!files.some((f) => f.endsWith('server.log')) || files.length < 2) throw new Error(`no server files found: ${files}`);
    let scanned = 0;
    for (const f of files) {
      const data = readFileSync(f);
      scanned += data.length;
      for (const t of plaintexts) if (data.includes(Buffer.from(t))) throw new Error(`"${t}" in plaintext in ${f}`);
    }
    // the scan can see: a text the server does store in clear (a group name) is found
    if (!files.some((f) => readFileSync(f).includes(Buffer.from('trio')))) throw new Error(`the group name "trio" not found in ${scanned} bytes: the scan is blind`);
  });

  await runCaseShots('a_device_the_server_forgot_is_offered_a_fresh_start', async () => {
    if (!alice) throw new Error('needs the first case');
    await server.stop();
    server.wipeData();
    await server.start();
    await waitFor('alice told her device is unknown', async () => await alice.isVisible('#refused'), 60_000);
    if ((await connState(alice)) === 'connected') throw new Error('shown online while refused');
    await alice.click('#forget');
    await alice.waitForSelector('#register-form', { state: 'visible', timeout: 30_000 });
    await register(alice, names.alice);
  });

  await runCaseShots('no_request_leaves_the_server', async () => {
    if (foreignRequests.length) throw new Error(`requests elsewhere: ${foreignRequests.join(', ')}`);
  });
}

await runBrowserTest(main, { server, cliState, getBrowser: () => browser });
