// End to end in headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core), against the real `tether serve` and `tether proxy`. The
// page loads the browser build (dist/index.js) as it is, with no bundler.
// Chromium's offline emulation does not close open WebSockets: the link is
// cut with the proxy, and the page's offline/online events come from
// Playwright's setOffline.
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { TetherClient, type WebSocketConstructor } from '../../src/index.js';
import { Gateway, Proxy, token, until } from './servers.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const DIST = new URL('../../dist/index.js', import.meta.url);
const EXAMPLE = new URL('../../../../examples/js/browser.html', import.meta.url);

let browser: Browser;
let site: Server;
let origin: string;
const cleanup: Array<() => unknown> = [];

beforeAll(async () => {
  if (!existsSync(DIST)) throw new Error('dist/index.js is missing: run `npm run build` first');
  const bundle = readFileSync(DIST);
  site = createServer((req, res) => {
    if (req.url?.startsWith('/browser.html')) {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(readFileSync(EXAMPLE));
    } else if (req.url === '/tether.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(bundle);
    } else {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<!doctype html><title>tether e2e</title>
<script type="module">window.tether = await import('/tether.js'); window.ready = true;</script>`);
    }
  });
  await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});
afterAll(async () => {
  await browser?.close();
  site?.close();
});
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function gateway(opts: ConstructorParameters<typeof Gateway>[0] = {}) {
  const gw = await new Gateway(opts).start();
  cleanup.push(() => gw.dispose());
  return gw;
}
async function proxy(gw: Gateway) {
  const px = await new Proxy().start(gw.port);
  cleanup.push(() => px.dispose());
  return px;
}
async function page(): Promise<{ ctx: BrowserContext; p: Page; errors: string[] }> {
  const ctx = await browser.newContext();
  cleanup.push(() => ctx.close());
  const p = await ctx.newPage();
  const errors: string[] = [];
  p.on('pageerror', (e) => errors.push(String(e)));
  await load(p);
  return { ctx, p, errors };
}
async function load(p: Page) {
  await p.goto(origin);
  await p.waitForFunction('window.ready === true');
}
/** Creates `window.c`, a client of `url` for `user`, plus `window.got` (events) and `window.lost`. */
async function startClient(p: Page, url: string, user: string, extra = '') {
  await p.evaluate(`(() => {
    window.got = []; window.lost = []; window.sessions = [];
    window.c = new tether.TetherClient({ url: ${JSON.stringify(url)}, token: ${JSON.stringify(token(user))},
      backoff: { initialMs: 100, maxMs: 1000 } ${extra} });
    window.c.on('session', (s) => window.sessions.push(s.resumed));
  })()`);
}
/** JS that runs `body` on the SDK's IndexedDB outbox store (`st`) and resolves with `done(value)`. */
const idb = (body: string) => `new Promise((done) => { const r = indexedDB.open('tether', 1);
  r.onsuccess = () => { const st = r.result.transaction('outbox', 'readwrite').objectStore('outbox'); ${body}; }; })`;
const evaluate = <T>(p: Page, js: string) => p.evaluate(js) as Promise<T>;

describe('browser client against the real gateway', () => {
  it('kill -9 and restart during a publish flow: every event exactly once, in order; every publish acked once', async () => {
    const gw = await gateway({ extra: ['--publish-rate', '2000', '--publish-burst', '2000'] });
    const px = await proxy(gw);
    const { p, errors } = await page();
    await startClient(p, px.url, 'alice');
    await evaluate(p, `c.join('flow', { onEvent: (e) => got.push(e.data) }); c.waitConnected()`);
    const N = 400;
    await evaluate(p, `(async () => { window.acks = [];
      for (let i = 0; i < ${N}; i++) { acks.push(c.publish('flow', i)); if (i === ${N / 2}) break; } })()`);
    await evaluate(p, `acks[${N / 2 - 10}]`);
    await gw.kill();
    await gw.start();
    await evaluate(p, `(async () => { for (let i = ${N / 2 + 1}; i < ${N}; i++) acks.push(c.publish('flow', i)); })()`);
    const offsets = await evaluate<number[]>(p, `Promise.all(acks).then((a) => a.map((x) => x.offset))`);
    expect(new Set(offsets).size).toBe(N);
    await p.waitForFunction(`got.length >= ${N}`, undefined, { timeout: 20_000 });
    expect(await evaluate(p, 'got')).toEqual(Array.from({ length: N }, (_, i) => i));
    expect((await gw.history('flow')).map((e) => e.data)).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(await evaluate(p, 'c.metrics.reconnects')).toBeGreaterThanOrEqual(1);
    expect(errors).toEqual([]);
  });

  it('a blackholed link is detected within ping + timeout + margin', async () => {
    const gw = await gateway();
    const px = await proxy(gw);
    const { p } = await page();
    await startClient(p, px.url, 'bob', ', pingIntervalMs: 1000, pingTimeoutMs: 1000');
    await evaluate(p, 'c.waitConnected()');
    await evaluate(p, `new Promise((r) => { window.t0 = Date.now(); c.on('state', (s) => s !== 'connected' && !window.lostAfter && (window.lostAfter = Date.now() - t0)); r(); })`);
    await px.faults({ direction: 'both', blackhole: true });
    await p.waitForFunction('window.lostAfter > 0', undefined, { timeout: 10_000 });
    const lostAfter = await evaluate<number>(p, 'lostAfter');
    console.log(`[figures] browser: blackhole detected after ${lostAfter} ms (ping 1000 ms + timeout 1000 ms)`);
    expect(lostAfter).toBeLessThan(3000);
    await px.clear();
    await evaluate(p, 'c.waitConnected()');
    expect(await evaluate(p, 'sessions')).toEqual([false, true]);
  });

  it('offline closes at once and pauses; online reconnects and resumes', async () => {
    const gw = await gateway();
    const px = await proxy(gw);
    const { ctx, p } = await page();
    await startClient(p, px.url, 'carol');
    await evaluate(p, 'c.waitConnected()');
    await ctx.setOffline(true);
    await p.waitForFunction(`c.status.state === 'disconnected' && c.status.reason === 'offline'`);
    // The SDK closed the socket itself (the emulation would have left it open).
    await until(async () => (await px.faults()).connections === 0, 10_000, 'the close');
    const t0 = Date.now();
    await ctx.setOffline(false);
    await evaluate(p, 'c.waitConnected()');
    console.log(`[figures] browser: online -> connected (resumed) in ${Date.now() - t0} ms`);
    expect(await evaluate(p, 'sessions')).toEqual([false, true]);
  });

  it('resumes 1,000 missed events', async () => {
    const gw = await gateway({ extra: ['--publish-rate', '5000', '--publish-burst', '5000'] });
    const px = await proxy(gw);
    const { p } = await page();
    await startClient(p, px.url, 'jay');
    await evaluate(p, `c.join('backlog', { onEvent: (e) => got.push(e.data) }); c.waitConnected()`);
    await px.faults({ refuse: true });
    await px.reset();
    await p.waitForFunction(`c.state !== 'connected'`);
    // The events come from a publisher in Node (the admin API is rate limited).
    const pub = new TetherClient({ url: gw.url, token: token('pub'), WebSocket: WebSocket as unknown as WebSocketConstructor });
    cleanup.push(async () => pub.dispose());
    const room = pub.join('backlog');
    await Promise.all(Array.from({ length: 1000 }, (_, i) => room.publish(i)));
    await px.clear();
    // `connected` comes after the replay (the reconnect order), so every
    // missed event must be in by then.
    const ms = await evaluate<number>(p, `new Promise((resolve) => { const t0 = performance.now();
      c.on('state', (s) => s === 'connected' && resolve(performance.now() - t0)); c.retryNow(); })`);
    console.log(`[figures] browser: resume with 1,000 missed events: ${ms.toFixed(0)} ms to connected with all of them`);
    expect(await evaluate(p, 'got')).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(await evaluate(p, 'sessions')).toEqual([false, true]);
  });

  it('a fatal close stops retrying; a manual retry works', async () => {
    const gw = await gateway();
    const { p } = await page();
    const good = token('dave');
    const bad = token('dave', 'a-wrong-secret');
    await p.evaluate(`(() => { window.good = false; window.asked = [];
      window.c = new tether.TetherClient({ url: ${JSON.stringify(gw.url)}, backoff: { initialMs: 100 },
        credentials: (refresh) => { asked.push(refresh); return good ? ${JSON.stringify(good)} : ${JSON.stringify(bad)}; } });
      window.w = c.waitConnected().then(() => 'connected', (e) => e.code); })()`);
    expect(await evaluate(p, 'w')).toBe('auth_failed');
    expect(await evaluate(p, '[c.status.state, c.status.closeCode, c.status.nextRetryAt ?? null, asked]')).toEqual([
      'error', 4004, null, [false, true],
    ]);
    await evaluate(p, `good = true; c.retryNow(); c.waitConnected()`);
  });

  it('a reload with 100 unsent messages: each stored exactly once afterwards', async () => {
    const gw = await gateway();
    const px = await proxy(gw);
    const { p } = await page();
    await startClient(p, px.url, 'erin');
    await evaluate(p, 'c.waitConnected()');
    await px.faults({ refuse: true });
    await px.reset();
    await p.waitForFunction(`c.state !== 'connected'`);
    await evaluate(p, `for (let i = 0; i < 100; i++) c.publish('saved', i).catch(() => {}); c.status.queued`);
    expect(await evaluate(p, 'c.status.outboxStorage')).toBe('indexeddb');
    await p.reload();
    await p.waitForFunction('window.ready === true');
    await startClient(p, px.url, 'erin');
    await p.waitForFunction('c.status.queued === 100', undefined, { timeout: 5000 });
    const idbKey = await evaluate<string>(p, idb(`st.getAll().onsuccess = (e) => done(e.target.result[0].k)`));
    await px.clear();
    await p.waitForFunction(`c.state === 'connected' && c.status.queued === 0`, undefined, { timeout: 15_000 });
    expect(await evaluate(p, 'sessions')).toEqual([true]);
    expect((await gw.history('saved')).map((e) => e.data)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    // A second reload finds nothing left to send, even when IndexedDB did not
    // commit the removals before the page went away (as happens when a page
    // unloads right after its acknowledgements): a row left behind is
    // overruled by the list saved at pagehide.
    await evaluate(p, idb(`st.put({ k: ${JSON.stringify(idbKey)}, s: 1e9, id: 'ghost', room: 'saved', data: '"ghost"' }).onsuccess = () => done()`));
    await p.reload();
    await p.waitForFunction('window.ready === true');
    await startClient(p, px.url, 'erin');
    await evaluate(p, 'c.waitConnected()');
    expect(await evaluate(p, 'c.status.queued')).toBe(0);
    // A marker published now is stored after anything the reload resent.
    await evaluate(p, `c.publish('saved', 'marker')`);
    expect((await gw.history('saved')).map((e) => e.data)).toEqual([...Array.from({ length: 100 }, (_, i) => i), 'marker']);
    expect(await evaluate(p, idb(`st.count().onsuccess = (e) => done(e.target.result)`))).toBe(0);
  });

  it('history lost after the gateway lost its data is reported', async () => {
    const gw = await gateway({ memory: true });
    const { p } = await page();
    await startClient(p, gw.url, 'frank');
    await evaluate(p, `window.room = c.join('news', { onEvent: (e) => got.push(e.offset), onHistoryLost: (h) => lost.push(h) });
      c.waitConnected().then(async () => { for (let i = 0; i < 5; i++) await c.publish('news', i); })`);
    await p.waitForFunction('got.length === 5');
    const before = await evaluate<{ epoch: number; offset: number }>(p, 'room.position');
    await gw.kill();
    await gw.start();
    await p.waitForFunction('lost.length === 1', undefined, { timeout: 15_000 });
    const lost = await evaluate<any[]>(p, 'lost');
    expect(lost[0]).toMatchObject({ room: 'news', lastDelivered: before });
    expect(lost[0].resumedAt.epoch).not.toBe(before.epoch);
  });

  it('a join refused while the others rejoin', async () => {
    const gw = await gateway();
    const px = await proxy(gw);
    const { p } = await page();
    await startClient(p, px.url, 'gina');
    await evaluate(p, `window.states = []; window.a = c.join('a'); window.b = c.join('b');
      c.join('bad\\u0001room', { onStatus: (s) => states.push(s.state + (s.code ? ':' + s.code : '')) }); c.waitConnected()`);
    await px.reset();
    await p.waitForFunction(`c.state !== 'connected'`);
    await evaluate(p, 'c.waitConnected()');
    expect(await evaluate(p, '[a.status, b.status, states]')).toEqual(['joined', 'joined', ['connecting', 'error:bad_room']]);
  });

  it('close() during an attempt', async () => {
    const gw = await gateway();
    const px = await proxy(gw);
    await px.faults({ direction: 'both', blackhole: true });
    const { p } = await page();
    await startClient(p, px.url, 'hank');
    await until(async () => (await px.faults()).connections === 1, 10_000, 'the attempt');
    expect(await evaluate(p, `window.w = c.waitConnected().catch((e) => e.code); c.close(); c.status.state`)).toBe('disconnected');
    expect(await evaluate(p, 'w')).toBe('closed');
    await until(async () => (await px.faults()).connections === 0, 10_000, 'the socket to close');
    expect((await px.faults()).accepted).toBe(1);
  });

  it('a hidden tab with throttled timers keeps its link and still finds a dead one', async () => {
    const gw = await gateway(); // HELLO announces 2 s heartbeats; the server closes after 9 s of silence
    const px = await proxy(gw);
    const { p } = await page();
    // Timers run only on 3 s boundaries, as a hidden tab's do (Chrome aligns them to a minute).
    const P = 3000;
    await startClient(p, px.url, 'ivy', `, clock: { now: () => Date.now(), clearTimeout: (h) => clearTimeout(h),
        setTimeout: (fn, ms) => setTimeout(fn, Math.ceil((Date.now() + ms) / ${P}) * ${P} - Date.now()) }`);
    await evaluate(p, `c.join('ticks', { onEvent: (e) => got.push(e.data) }); c.waitConnected()`);
    for (let i = 0; i < 30; i++) {
      await gw.admin('/api/rooms/ticks/publish', i);
      await new Promise((r) => setTimeout(r, 300));
    }
    await p.waitForFunction('got.length === 30');
    expect(await evaluate(p, 'got')).toEqual(Array.from({ length: 30 }, (_, i) => i));
    expect(await evaluate(p, '[c.metrics.attempts, c.state]')).toEqual([1, 'connected']);
    const t0 = Date.now();
    await px.faults({ direction: 'both', blackhole: true });
    await p.waitForFunction(`c.state !== 'connected'`, undefined, { timeout: 20_000 });
    expect(Date.now() - t0).toBeLessThan(3 * P + 2000);
    expect(await evaluate(p, 'c.status.closeReason')).toBe('heartbeat timeout');
  });
});

describe('examples/js/browser.html', () => {
  it('shows the room and sends what is typed', async () => {
    const gw = await gateway();
    const ctx = await browser.newContext();
    cleanup.push(() => ctx.close());
    const p = await ctx.newPage();
    const q = new URLSearchParams({ url: gw.url, token: token('yan'), room: 'lobby' });
    await p.goto(`${origin}browser.html?${q}`);
    await p.waitForFunction(`window.client && client.state === 'connected'`);
    await p.fill('#text', 'hello from the page');
    await p.click('button');
    await p.waitForSelector('li');
    expect(await p.textContent('li')).toBe('#1 hello from the page');
    expect(await p.textContent('#status')).toBe('connected');
  });
});
