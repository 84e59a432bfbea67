// Entry point: the app talks to the server that served the page, on the
// same host and port (ws:// or wss:// as the page was loaded).
import { App } from './app';
import { mount } from './ui';
import { mountPush } from './pushui';

const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
let render = () => {};
const app = new App(url, () => render());
const draw = mount(document.getElementById('app')!, app);
const pushTick = mountPush(app);
render = () => { draw(); pushTick(); };
(window as unknown as { parley: App }).parley = app;   // for the browser tests and the console
app.start().catch((e) => app.fail(e));
