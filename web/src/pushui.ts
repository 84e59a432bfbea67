// The "Notifications" toggle in the sidebar and the rest of the app's Web
// Push wiring, kept beside the app rather than in it: registers the
// service worker, keeps the worker's cache of conversation names current,
// registers the subscription again at each sign-in (the browser may have
// renewed it; the server may be a new store), and opens the conversation
// a notification names (a message from the worker to an open page, or
// /#c=ID for a page the worker opened).
import type { App } from './app';
import * as push from './push';

export function mountPush(app: App): () => void {
  const box = document.createElement('div');
  box.className = 'notify';
  box.innerHTML = '<label><input id="push-toggle" type="checkbox"> Notifications</label> <output id="push-status"></output>';
  document.getElementById('sidebar')?.append(box);
  const toggle = box.querySelector<HTMLInputElement>('#push-toggle')!;
  const status = box.querySelector<HTMLOutputElement>('#push-status')!;
  let busy = false;
  let wasSignedIn = false;
  let savedNames = '';
  let openWanted = push.conversationOfHash(location.hash);
  if (openWanted !== null) history.replaceState(null, '', '/');

  const setState = (on: boolean, why: string) => {
    toggle.checked = on;
    toggle.dataset.state = on ? 'on' : 'off';
    status.textContent = why;
  };

  if (!push.supported()) {
    toggle.disabled = true;
    setState(false, 'not available in this browser');
  } else {
    void push.registerWorker();
    void push.isEnabled().then((on) => setState(on, ''));
    navigator.serviceWorker.addEventListener('message', (ev: MessageEvent) => {
      const m = ev.data as { type?: unknown; conversationId?: unknown } | null;
      if (m?.type !== push.OPEN_MESSAGE || typeof m.conversationId !== 'string') return;
      openWanted = push.conversationOfHash(`#c=${m.conversationId}`);
      tick();
    });
  }

  toggle.addEventListener('change', () => {
    if (busy) return;
    busy = true;
    toggle.disabled = true;
    const on = toggle.checked;
    const work = on ? push.enable(app.request, app.pushKey) : push.disable(app.request);
    work.then(() => setState(on, ''), (e) => setState(!on, e instanceof Error ? e.message : String(e)))
      .finally(() => { busy = false; toggle.disabled = false; });
  });

  function tick(): void {
    if (app.signedIn && !wasSignedIn && !busy && push.supported()) {
      void navigator.serviceWorker.ready.then((r) => r.pushManager.getSubscription())
        .then((sub) => (sub ? app.request(push.pushRegisterBody(sub)) : undefined))
        .catch((e) => { status.textContent = e instanceof Error ? e.message : String(e); });
    }
    wasSignedIn = app.signedIn;
    const names = new Map([...app.convs.values()].map((c) => [c.id.toString(), app.convTitle(c)]));
    const key = JSON.stringify([...names]);
    if (key !== savedNames) { savedNames = key; void push.saveConversationNames(names).catch(() => undefined); }
    if (openWanted !== null && app.signedIn && app.convs.has(openWanted)) {
      const id = openWanted;
      openWanted = null;
      void app.openConversation(id);
    }
  }
  return tick;
}
