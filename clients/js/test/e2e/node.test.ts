// End to end in Node 20 (no global WebSocket: the `ws` package), against the
// real `tether serve`, with `tether proxy` on the link for faults.
import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  type ClientOptions,
  type Environment,
  type EnvironmentEvent,
  TetherClient,
  type WebSocketConstructor,
} from '../../src/index.js';
import { Gateway, Proxy, token, until } from './servers.js';

const WS = WebSocket as unknown as WebSocketConstructor;
const cleanup: Array<() => unknown> = [];
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
function client(url: string, user: string, opts: Partial<ClientOptions> = {}) {
  const c = new TetherClient({
    url,
    token: token(user),
    WebSocket: WS,
    backoff: { initialMs: 100, maxMs: 1000 },
    ...opts,
  });
  cleanup.push(() => c.dispose());
  return c;
}

describe('Node client against the real gateway', () => {
  it('kill -9 and restart during a publish flow: every event exactly once, in order; every publish acked once', async () => {
    const gw = await gateway({ extra: ['--publish-rate', '2000', '--publish-burst', '2000'] });
    const px = await proxy(gw);
    const got: unknown[] = [];
    const sub = client(px.url, 'bob');
    sub.join('flow', { onEvent: (e) => got.push(e.data) });
    await sub.waitConnected({ timeoutMs: 10_000 });
    const pub = client(px.url, 'alice');
    await pub.waitConnected({ timeoutMs: 10_000 });
    const N = 400;
    const acks: Array<Promise<{ offset: number }>> = [];
    for (let i = 0; i < N; i++) {
      acks.push(pub.publish('flow', i));
      if (i === N / 2) {
        await acks[i - 10]; // some are acknowledged, others in flight
        await gw.kill();
        await gw.start();
      }
      if (i % 20 === 0) await new Promise((r) => setImmediate(r));
    }
    const offsets = (await Promise.all(acks)).map((a) => a.offset);
    expect(new Set(offsets).size).toBe(N);
    await until(() => got.length >= N, 20_000, 'every event');
    expect(got).toEqual(Array.from({ length: N }, (_, i) => i));
    const stored = (await gw.history('flow')).map((e) => e.data);
    expect(stored).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(pub.metrics.acked).toBe(N);
    expect(sub.metrics.reconnects).toBeGreaterThanOrEqual(1);
  });

  it('a blackholed link is detected within ping + timeout + margin, then resumes', async () => {
    const gw = await gateway();
    const px = await proxy(gw);
    const c = client(px.url, 'carol', { pingIntervalMs: 1000, pingTimeoutMs: 1000 });
    const sessions: boolean[] = [];
    c.on('session', (s) => sessions.push(s.resumed));
    await c.waitConnected({ timeoutMs: 10_000 });
    const t0 = Date.now();
    let lostAfter = 0;
    c.on('state', (s) => {
      if (s !== 'connected' && !lostAfter) lostAfter = Date.now() - t0;
    });
    await px.faults({ direction: 'both', blackhole: true });
    await until(() => lostAfter > 0, 10_000, 'the dead link to be noticed');
    expect(lostAfter).toBeLessThan(1000 + 1000 + 1000);
    expect(c.status.closeReason).toBe('heartbeat timeout');
    await px.clear();
    await c.waitConnected({ timeoutMs: 10_000 });
    expect(sessions).toEqual([false, true]);
  });

  it('offline closes and pauses; online reconnects and resumes', async () => {
    const gw = await gateway();
    const fns = new Set<(e: EnvironmentEvent) => void>();
    let online = true;
    const env: Environment = { online: () => online, subscribe: (fn) => (fns.add(fn), () => fns.delete(fn)) };
    const fire = (e: EnvironmentEvent) => {
      online = e.type !== 'offline';
      for (const f of fns) f(e);
    };
    const c = client(gw.url, 'dave', { environment: env });
    const sessions: boolean[] = [];
    c.on('session', (s) => sessions.push(s.resumed));
    await c.waitConnected({ timeoutMs: 10_000 });
    fire({ type: 'offline' });
    expect(c.status).toMatchObject({ state: 'disconnected', reason: 'offline', nextRetryAt: undefined });
    const conns = async () =>
      /tether_connections (\d+)/.exec(await (await fetch(`http://127.0.0.1:${gw.port}/metrics`)).text())![1];
    await until(async () => (await conns()) === '0', 10_000, 'the gateway to see the close');
    fire({ type: 'online' });
    await c.waitConnected({ timeoutMs: 10_000 });
    expect(sessions).toEqual([false, true]);
  });

  it('a fatal refusal stops retrying; a manual retry with good credentials connects', async () => {
    const gw = await gateway();
    let good = false;
    const asked: boolean[] = [];
    const c = client(gw.url, 'erin', {
      token: undefined,
      credentials: (refresh) => {
        asked.push(refresh);
        return good ? token('erin') : token('erin', 'a-wrong-secret');
      },
    });
    const stopped = c.waitConnected({ timeoutMs: 10_000 });
    await expect(stopped).rejects.toMatchObject({ code: 'auth_failed' });
    expect(c.status).toMatchObject({ state: 'error', closeCode: 4004, nextRetryAt: undefined });
    expect(asked).toEqual([false, true]);
    good = true;
    c.retryNow();
    await c.waitConnected({ timeoutMs: 10_000 });
  });

  it('history lost after the gateway lost its data is reported, not hidden', async () => {
    const gw = await gateway({ memory: true });
    const lost: unknown[] = [];
    const got: number[] = [];
    const c = client(gw.url, 'frank', { backoff: { initialMs: 50, maxMs: 200 } });
    const news = c.join('news', { onEvent: (e) => got.push(e.offset), onHistoryLost: (h) => lost.push(h) });
    await c.waitConnected({ timeoutMs: 10_000 });
    for (let i = 0; i < 5; i++) await c.publish('news', i);
    await until(() => got.length === 5, 10_000, 'five events');
    const before = news.position!;
    expect(before.offset).toBe(5);
    await gw.kill();
    await gw.start(); // --memory: everything is gone
    await until(() => lost.length === 1, 15_000, 'history lost');
    expect(lost[0]).toMatchObject({ room: 'news', lastDelivered: before });
    expect((lost[0] as any).resumedAt.epoch).not.toBe(before.epoch);
    await c.waitConnected({ timeoutMs: 10_000 });
    await c.publish('news', 'after');
    await until(() => got.length === 6, 10_000, 'the new event');
    expect(got[5]).toBe(1);
  });

  it('a join refused while the others rejoin: that room in error, the others joined', async () => {
    const gw = await gateway();
    const px = await proxy(gw);
    const c = client(px.url, 'gina');
    const states: string[] = [];
    const a = c.join('a');
    const b = c.join('b');
    c.join('bad\u0001room', { onStatus: (s) => states.push(`${s.state}${s.code ? ':' + s.code : ''}`) });
    await c.waitConnected({ timeoutMs: 10_000 });
    expect(states).toEqual(['connecting', 'error:bad_room']);
    await px.reset();
    await until(() => c.state !== 'connected', 10_000, 'the reset to be seen');
    await c.waitConnected({ timeoutMs: 10_000 });
    expect([a.status, b.status]).toEqual(['joined', 'joined']);
    expect(states).toEqual(['connecting', 'error:bad_room']);
  });

  it('close() during an attempt ends it, and no further attempt is made', async () => {
    const gw = await gateway();
    const px = await proxy(gw);
    await px.faults({ direction: 'both', blackhole: true });
    const c = client(px.url, 'hank');
    const w = c.waitConnected();
    expect(c.status.phase).toBe('opening');
    await until(async () => (await px.faults()).connections === 1, 10_000, 'the attempt to reach the proxy');
    c.close();
    await expect(w).rejects.toMatchObject({ code: 'closed' });
    expect(c.status).toMatchObject({ state: 'disconnected', reason: 'manual', nextRetryAt: undefined });
    await until(async () => (await px.faults()).connections === 0, 10_000, 'the socket to be closed');
    expect((await px.faults()).accepted).toBe(1);
  });
});

describe('examples/js/node-chat.mjs', () => {
  it('publishes its stdin, prints the room, exits 0 once everything was acknowledged', async () => {
    const gw = await gateway();
    const script = new URL('../../../../examples/js/node-chat.mjs', import.meta.url).pathname;
    // Its stdout is left out: it may exit before its own events come back, so
    // the gateway's history is the proof.
    const proc = spawn(process.execPath, [script, gw.url, token('zoe'), 'lobby'], { stdio: ['pipe', 'ignore', 'inherit'] });
    proc.stdin!.end('hello\nworld\n');
    const code = await new Promise((r) => proc.on('exit', r));
    expect(code).toBe(0);
    expect((await gw.history('lobby')).map((e) => e.data)).toEqual(['hello', 'world']);
  });
});
