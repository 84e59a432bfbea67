// The page: built once (a static skeleton, so the composer keeps its focus
// and text across renders), then filled from the model with textContent
// only (nothing a user sent is ever parsed as HTML). Every control is a
// button, input or form: Tab moves between them, Enter sends, Escape goes
// back to the list.
import { qrSvg } from './qr';
import type { App } from './app';
import { tickFor } from './model';

const SKELETON = `
<header class="top">
  <span class="brand">parley</span>
  <span id="me"></span>
  <span id="conn" role="status" aria-live="polite"></span>
</header>
<p id="error" role="alert"></p>
<p id="refused" hidden>The server does not know this browser's device any more.
  <button id="forget" type="button">Forget it and start again</button></p>
<section id="login" hidden>
  <h1>Welcome to parley</h1>
  <form id="register-form">
    <h2>New account</h2>
    <label>User name <input name="name" required maxlength="32" pattern="[a-z0-9_.\\-]+" autocomplete="username"></label>
    <button type="submit">Register</button>
  </form>
  <form id="link-form">
    <h2>Link this browser to your account</h2>
    <label>Link token <input name="token" required maxlength="128" autocomplete="off"></label>
    <label>Your user name <input name="name" maxlength="32"></label>
    <button type="submit">Link</button>
  </form>
</section>
<div id="shell" hidden>
  <aside id="sidebar">
    <form id="direct-form" class="row">
      <input name="peer" required maxlength="32" placeholder="user name" aria-label="Chat with (user name)">
      <button type="submit">Chat</button>
    </form>
    <form id="group-form" class="row">
      <input name="name" required maxlength="128" placeholder="group name" aria-label="Group name">
      <input name="members" placeholder="bob, carol" aria-label="Members (user names, comma separated)">
      <button type="submit">New group</button>
    </form>
    <ul id="conv-list" aria-label="Conversations"></ul>
    <div class="link">
      <button id="link-button" type="button">Link another device</button>
      <output id="link-token"></output>
    </div>
  </aside>
  <section id="chat" aria-label="Chat">
    <header id="chat-head">
      <button id="back" type="button" aria-label="Back to conversations">&larr;</button>
      <div><h2 id="chat-title"></h2><span id="chat-presence"></span></div>
      <form id="add-form" class="row group-only">
        <input name="member" required maxlength="32" placeholder="add user" aria-label="Add member (user name)">
        <button type="submit">Add</button>
      </form>
      <button id="accept" type="button" hidden>Accept request</button>
      <button id="leave" type="button" class="group-only">Leave</button>
    </header>
    <ol id="messages" tabindex="0" aria-label="Messages" aria-live="polite"></ol>
    <p id="typing" aria-live="polite"></p>
    <form id="composer" class="row">
      <input id="compose" name="text" autocomplete="off" maxlength="4000" placeholder="Message" aria-label="Message">
      <button type="submit">Send</button>
    </form>
  </section>
  <p id="empty-chat">Pick a conversation, or start one.</p>
</div>`;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function ago(ms: number): string {
  if (!ms) return 'never seen';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return 'last seen just now';
  if (s < 3600) return `last seen ${Math.round(s / 60)} min ago`;
  return `last seen ${new Date(ms).toLocaleString()}`;
}

export function mount(root: HTMLElement, app: App): () => void {
  root.innerHTML = SKELETON;
  const form = (id: string, fn: (data: FormData, f: HTMLFormElement) => Promise<void>) => {
    const f = $<HTMLFormElement>(id);
    f.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const data = new FormData(f);
      fn(data, f).then(() => { app.error = ''; render(); }, (e) => app.fail(e));
    });
  };
  form('register-form', (d) => app.register(String(d.get('name')).trim()));
  form('link-form', (d) => app.link(String(d.get('token')).trim(), String(d.get('name') ?? '').trim()));
  form('direct-form', async (d, f) => { await app.openDirect(String(d.get('peer')).trim()); f.reset(); });
  form('group-form', async (d, f) => {
    const members = String(d.get('members') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    await app.createGroup(String(d.get('name')).trim(), members);
    f.reset();
  });
  form('add-form', async (d, f) => { await app.addMember(String(d.get('member')).trim()); f.reset(); });
  form('composer', async (d, f) => { const text = String(d.get('text')); f.reset(); await app.send(text); });
  $('compose').addEventListener('input', () => app.typed());
  $('accept').addEventListener('click', () => app.accept().catch((e) => app.fail(e)));
  $('leave').addEventListener('click', () => app.leave().catch((e) => app.fail(e)));
  $('link-button').addEventListener('click', () => app.createLinkToken().catch((e) => app.fail(e)));
  $('forget').addEventListener('click', () => app.forgetDevice().catch((e) => app.fail(e)));
  $('back').addEventListener('click', () => void app.openConversation(null));
  document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape' && app.current !== null) void app.openConversation(null); });
  document.addEventListener('visibilitychange', () => { app.markRead(); render(); });
  const messages = $<HTMLOListElement>('messages');
  messages.addEventListener('scroll', () => {
    if (messages.scrollTop > 40) return;
    const before = messages.scrollHeight - messages.scrollTop;
    app.loadOlder().then((more) => {
      if (!more) return;
      render();
      messages.scrollTop = messages.scrollHeight - before;   // keep the reader's place
    }, (e) => app.fail(e));
  });

  let renderQueued = false;
  function render(): void {
    if (renderQueued) return;
    renderQueued = true;
    setTimeout(() => { renderQueued = false; draw(); }, 0);
  }

  function draw(): void {
    const conn = $('conn');
    const state = app.connState === 'connected' && !app.signedIn ? 'connecting' : app.connState;
    conn.dataset.state = state;
    conn.textContent = state === 'connected' ? 'online' : state === 'connecting' ? 'connecting…' : `offline: ${app.connDetail}`;
    $('error').textContent = app.error;
    $('refused').hidden = !app.signInRefused;
    $('me').textContent = app.identity ? `${app.identity.userName || '#' + app.identity.userId} · device ${app.identity.deviceId}` : '';
    $('login').hidden = !(app.needsLogin && !app.identity);
    const shell = $('shell');
    shell.hidden = !app.identity;
    shell.dataset.view = app.current === null ? 'list' : 'chat';
    const tokenOut = $('link-token');
    if (tokenOut.dataset.token !== app.linkToken) {   // redrawn only when it changes
      tokenOut.dataset.token = app.linkToken;
      tokenOut.replaceChildren();
      if (app.linkToken) {
        const text = document.createElement('span'); text.className = 'token'; text.textContent = app.linkToken;
        tokenOut.append(text, qrSvg(app.linkToken, 'the link token as a QR code'));
      }
    }

    const list = $('conv-list');
    list.replaceChildren();
    const convs = [...app.convs.values()].sort((a, b) => b.lastTs - a.lastTs || (a.id < b.id ? 1 : -1));
    for (const c of convs) {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'conv';
      b.dataset.conv = c.id.toString();
      if (c.id === app.current) b.setAttribute('aria-current', 'true');
      const title = document.createElement('span'); title.className = 'title'; title.textContent = app.convTitle(c) + (c.request ? ' (request)' : '');
      const last = document.createElement('span'); last.className = 'last'; last.textContent = c.lastText;
      b.append(title, last);
      if (c.unread > 0) {
        const u = document.createElement('span'); u.className = 'unread'; u.textContent = String(c.unread);
        u.setAttribute('aria-label', `${c.unread} unread`);
        b.append(u);
      }
      b.addEventListener('click', () => void app.openConversation(c.id));
      li.append(b);
      list.append(li);
    }

    const c = app.current !== null ? app.convs.get(app.current) : undefined;
    $('chat').hidden = !c;
    $('empty-chat').hidden = !!c;
    if (!c || !app.identity) return;
    const me = app.identity.userId;
    $('chat-title').textContent = app.convTitle(c);
    for (const el of document.querySelectorAll<HTMLElement>('.group-only')) el.hidden = !c.group;
    $('accept').hidden = !c.request;
    const peer = c.group ? undefined : c.members.find((m) => m !== me);
    const p = peer !== undefined ? app.presence.get(peer) : undefined;
    const pres = $('chat-presence');
    pres.textContent = c.group ? `${c.members.length} members` : p ? (p.online ? 'online' : ago(p.lastSeen)) : '';
    pres.dataset.online = String(!!p?.online);

    const atBottom = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 40;
    messages.replaceChildren();
    const t = app.thread(c.id);
    const receipts = app.receipts.get(c.id);
    for (const b of t.ordered()) {
      const li = document.createElement('li');
      if (b.system) {
        li.className = 'system';
        li.textContent = b.text;
      } else {
        const mine = b.sender === me;
        li.className = (mine ? 'bubble mine' : 'bubble theirs') + (b.locked ? ' undecryptable' : '');
        if (b.seq !== null) li.dataset.seq = b.seq.toString();
        if (c.group && !mine) {
          const who = document.createElement('span'); who.className = 'who'; who.textContent = app.nameOf(b.sender);
          li.append(who);
        }
        const text = document.createElement('span'); text.className = 'text'; text.textContent = b.text;
        li.append(text);
        const meta = document.createElement('span'); meta.className = 'meta';
        meta.textContent = new Date(b.ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) +
          (b.plain ? ' · not encrypted' : '');
        if (mine) {
          const st = tickFor(b, me, c.members, receipts);
          li.dataset.status = st;
          const tick = document.createElement('span'); tick.className = 'tick';
          tick.textContent = { pending: '🕓', sent: '✓', delivered: '✓✓', read: '✓✓', failed: '⚠' }[st];
          tick.setAttribute('aria-label', st === 'failed' ? `not sent: ${b.failed}` : st);
          tick.title = st;
          meta.append(' ', tick);
        }
        li.append(meta);
      }
      messages.append(li);
    }
    if (atBottom) messages.scrollTop = messages.scrollHeight;
    const typers = app.typers(c.id).map((u) => app.nameOf(u));
    $('typing').textContent = typers.length ? `${typers.join(', ')} ${typers.length > 1 ? 'are' : 'is'} typing…` : '';
  }

  return render;
}
