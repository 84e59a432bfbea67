// What the browser tests share: start `parley serve` on a free loopback
// port (stopped by PID on every path, including a signal to this process),
// kill -9 and restart it on the same port, run parley-cli, and report
// cases in tests/check.h's format (PASS name / FAIL name, a closing
// "CASES n passed m failed") so tests/run.sh counts them.
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ROOT = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns a truthy value; throws past timeoutMs (a
 * liveness bound, never a timing assertion). */
export async function waitFor(what, fn, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (let i = 0; i < 100_000; i++) {
    try { last = await fn(); } catch (e) { last = e; }
    if (last && !(last instanceof Error)) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await sleep(100);
  }
  throw new Error(`gave up waiting for ${what}`);
}

const servers = new Set();
function killAll() { for (const s of servers) s.kill9(); }
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { killAll(); process.exit(1); });

export class Server {
  constructor({ bin, webRoot }) {
    this.bin = bin;
    this.webRoot = webRoot;
    this.dir = mkdtempSync(join(tmpdir(), 'parley-web-e2e-'));
    this.proc = null;
    this.port = 0;
    this.starts = 0;
  }

  get base() { return `http://127.0.0.1:${this.port}`; }
  get ws() { return `ws://127.0.0.1:${this.port}`; }

  async start() {
    if (!this.port) this.port = await freePort();
    const log = openSync(join(this.dir, 'server.log'), 'a');
    this.proc = spawn(this.bin, ['serve', '--listen', `127.0.0.1:${this.port}`, '--data', join(this.dir, 'data'),
      '--web-root', this.webRoot, '--drain-window', '100'], { stdio: ['ignore', log, log] });
    this.starts++;
    servers.add(this);
    const proc = this.proc;
    await waitFor('the server\'s /healthz', async () => {
      if (proc.exitCode !== null) throw new Error(`server exited ${proc.exitCode}:\n${this.logTail()}`);
      const r = await fetch(`${this.base}/healthz`).catch(() => null);
      return r && r.status === 200;
    }, 60_000);
  }

  kill9() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }

  async stop() {
    const p = this.proc;
    if (!p) return;
    if (p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await Promise.race([exited, sleep(15_000)]);
      this.kill9();
    }
    servers.delete(this);
    this.proc = null;
  }

  async killAndWait() {
    const p = this.proc;
    const exited = new Promise((r) => p.once('exit', r));
    this.kill9();
    await exited;
    this.proc = null;
  }

  /** Removes the store (stopped server only): the next start is a new, empty one. */
  wipeData() {
    if (this.proc) throw new Error('wipeData on a running server');
    rmSync(join(this.dir, 'data'), { recursive: true, force: true });
  }

  logTail(lines = 30) {
    try { return readFileSync(join(this.dir, 'server.log'), 'utf8').split('\n').slice(-lines).join('\n'); } catch { return ''; }
  }

  async destroy() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** parley-cli with its own state file; resolves to stdout, rejects on a non-zero exit. */
export function cli(bin, server, stateDir, args, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    execFile(bin, ['--state', stateDir, '--server', server.ws, ...args], { timeout: timeoutMs },
      (err, stdout, stderr) => (err ? reject(new Error(`parley-cli ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout)));
  });
}

let passed = 0;
let failed = 0;
export async function runCase(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`PASS ${name}`);
  } catch (e) {
    failed++;
    console.error(`  ${name}: ${e && e.stack ? e.stack : e}`);
    console.log(`FAIL ${name}`);
  }
}

export function finish() {
  console.log(`CASES ${passed} passed ${failed} failed`);
  return failed === 0 && passed > 0 ? 0 : 1;
}

// Runs a browser test's main(), then always: closes the browser (getBrowser()
// may give undefined when it never started), shows the server's log tail when
// something failed, stops the server, removes the parley-cli state directory,
// prints the summary and exits with its code.
export async function runBrowserTest(main, { server, cliState, getBrowser }) {
  let code = 1;
  try {
    await main();
  } catch (e) {
    console.error(`  setup: ${e && e.stack ? e.stack : e}`);
    console.log('FAIL setup');
  } finally {
    const browser = getBrowser();
    if (browser) await browser.close().catch(() => undefined);
    if (process.exitCode) console.error(server.logTail());
    await server.destroy();
    rmSync(cliState, { recursive: true, force: true });
    code = finish();
  }
  process.exit(code);
}
