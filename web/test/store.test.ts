// The key store's moves without a server: a fake directory and device-message
// queues in memory stand in for parley (the wire bytes are the same ones the
// interop test in tests/web/e2e.mjs sends through the real server).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { E2EError, E2EStatus } from '../src/e2e/errors';
import { KeyStore, type Net, type RemoteBundle, isEncryptedBody } from '../src/e2e/store';

const enc = new TextEncoder();
const dec = new TextDecoder();

interface Dev { user: bigint; device: number; store: KeyStore; inbox: { u: bigint; d: number; body: Uint8Array }[] }

function world() {
  const devs: Dev[] = [];
  const dir = new Map<string, { ik: Uint8Array; spk: { keyId: number; publicKey: Uint8Array; signature: Uint8Array }; otks: { keyId: number; publicKey: Uint8Array }[] }>();
  const netFor = (me: Dev): Net => ({
    async uploadKeys(ik, spk, otks) {
      const k = `${me.user}/${me.device}`;
      const e = dir.get(k) ?? { ik, spk, otks: [] };
      e.spk = spk; e.otks.push(...otks);
      dir.set(k, e);
    },
    async fetchKeys(user) {
      const out: RemoteBundle[] = [];
      for (const d of devs.filter((x) => x.user === user)) {
        const e = dir.get(`${d.user}/${d.device}`);
        if (!e) continue;
        out.push({ deviceId: d.device, identityKey: e.ik, signedPreKey: e.spk, oneTimePreKey: e.otks.shift() });
      }
      return out;
    },
    async getDevices(user) { return devs.filter((x) => x.user === user).map((x) => x.device); },
    async sendDeviceMessage(user, device, body) {
      devs.find((x) => x.user === user && x.device === device)!.inbox.push({ u: me.user, d: me.device, body });
    },
  });
  const add = async (user: bigint, device: number) => {
    const d: Dev = { user, device, store: KeyStore.create(), inbox: [] };
    devs.push(d);
    await d.store.publish(netFor(d));
    return d;
  };
  const deliver = (d: Dev) => { for (const m of d.inbox.splice(0)) d.store.handleDeviceMessage(m.u, m.d, m.body); };
  return { add, netFor, deliver, dir };
}

test('a sender key reaches every member device (and the sender\'s other device) pairwise; each decrypts', async () => {
  const w = world();
  const a1 = await w.add(1n, 1), a2 = await w.add(1n, 2), b = await w.add(2n, 1), c = await w.add(3n, 1);
  const conv = 77n;
  const ct = await a1.store.encrypt(w.netFor(a1), { user: 1n, device: 1 }, conv, [1n, 2n, 3n], enc.encode('hello group'));
  assert.ok(isEncryptedBody(ct));
  assert.ok(!dec.decode(ct).includes('hello group'));
  for (const d of [a2, b, c]) {
    assert.equal(d.inbox.length, 1, 'one device message each');
    assert.throws(() => d.store.decrypt(conv, 1n, 1, ct), (e: unknown) => e instanceof E2EError && e.status === E2EStatus.WRONG_KEY);
    w.deliver(d);
    assert.equal(dec.decode(d.store.decrypt(conv, 1n, 1, ct)), 'hello group');
  }
  // the second message needs no new hand-out
  const ct2 = await a1.store.encrypt(w.netFor(a1), { user: 1n, device: 1 }, conv, [1n, 2n, 3n], enc.encode('again'));
  assert.equal(b.inbox.length, 0);
  assert.equal(dec.decode(b.store.decrypt(conv, 1n, 1, ct2)), 'again');
  // a reply the other way, after a save/load of both stores
  const b2 = { ...b, store: KeyStore.load(structuredClone(b.store.save())) };
  const back = await b2.store.encrypt(w.netFor(b2), { user: 2n, device: 1 }, conv, [1n, 2n, 3n], enc.encode('reply'));
  const a1r = KeyStore.load(structuredClone(a1.store.save()));
  for (const m of a1.inbox.splice(0)) a1r.handleDeviceMessage(m.u, m.d, m.body);
  assert.equal(dec.decode(a1r.decrypt(conv, 2n, 1, back)), 'reply');
});

test('a member removed: the next send uses a new key the removed device never gets', async () => {
  const w = world();
  const a = await w.add(1n, 1), b = await w.add(2n, 1), c = await w.add(3n, 1);
  const me = { user: 1n, device: 1 };
  await a.store.encrypt(w.netFor(a), me, 5n, [2n, 3n], enc.encode('before'));
  w.deliver(b); w.deliver(c);
  const after = await a.store.encrypt(w.netFor(a), me, 5n, [2n], enc.encode('after'));
  assert.equal(c.inbox.length, 0, 'no key for the removed member');
  assert.throws(() => c.store.decrypt(5n, 1n, 1, after), (e: unknown) => e instanceof E2EError && e.status === E2EStatus.WRONG_KEY);
  w.deliver(b);
  assert.equal(dec.decode(b.store.decrypt(5n, 1n, 1, after)), 'after');
});

test('a one-time pre-key is used once; KeysLow refills with new ids', async () => {
  const w = world();
  const a = await w.add(1n, 1);
  assert.equal(w.dir.get('1/1')!.otks.length, 100);
  await a.store.refill(w.netFor(a));
  const ids = w.dir.get('1/1')!.otks.map((k) => k.keyId);
  assert.equal(ids.length, 200);
  assert.equal(new Set(ids).size, 200, 'no id uploaded twice');
});
