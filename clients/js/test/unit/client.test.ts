// The client's rules in virtual time, mirroring the C++ core's tests
// (tests/unit/client_core_test.cpp, reconnector_test.cpp, backoff_test.cpp).
import { describe, expect, it, vi } from 'vitest';
import { Backoff, TetherClient, TetherError } from '../../src/index.js';
import { FakeSocket, harness, MapStorage } from './virtual.js';

const ev = (room: string, epoch: number, offset: number, data: unknown = offset) => ({ room, epoch, offset, data });

describe('reconnect order', () => {
  it('authenticates, rejoins with positions, replays, then connects and flushes the outbox', async () => {
    const h = await harness();
    const got: number[] = [];
    h.client.join('r', { since: { epoch: 7, offset: 2 }, onEvent: (e) => got.push(e.offset) });
    const acked = h.client.publish('r', { n: 1 });
    await h.settle();
    const s = h.sock();
    expect(s.protocols).toBe('tether.v1');
    expect(s.sent).toEqual([]);
    s.accept();
    expect(h.client.status.phase).toBe('authenticating');
    s.frame('HELLO', { heartbeat_ms: 25000, session_ttl_ms: 60000 });
    expect(s.ops()).toEqual(['IDENTIFY']);
    expect(s.last('IDENTIFY')).toMatchObject({ token: 'tok', client: { name: 'tether-js' } });
    s.frame('READY', { session_id: 's1', resume_token: 'rt', user: 'alice' });
    expect(s.ops()).toEqual(['IDENTIFY', 'JOIN']);
    expect(s.last('JOIN')).toEqual({ room: 'r', since: { epoch: 7, offset: 2 } });
    s.frame('JOINED', { room: 'r', epoch: 7, offset: 4, recovered: true });
    expect(h.client.state).toBe('connecting');
    expect(h.client.status.phase).toBe('catching_up');
    s.frame('EVENT', ev('r', 7, 3));
    expect(s.ops()).not.toContain('PUBLISH');
    s.frame('EVENT', ev('r', 7, 4));
    expect(h.client.state).toBe('connected');
    expect(got).toEqual([3, 4]);
    const pub = s.last('PUBLISH')!;
    expect(pub).toMatchObject({ room: 'r', data: { n: 1 } });
    s.frame('ACK', { id: pub.id, room: 'r', epoch: 7, offset: 5 });
    await expect(acked).resolves.toEqual({ id: pub.id, room: 'r', epoch: 7, offset: 5 });
  });

  it('calls the state handler at once and on every change', async () => {
    const h = await harness();
    const seen: string[] = [];
    const off = h.client.on('state', (s) => seen.push(s));
    await h.handshake();
    expect(seen).toEqual(['connecting', 'connected']);
    off();
    h.sock().serverClose(1006);
    expect(seen).toEqual(['connecting', 'connected']);
    expect(h.client.state).toBe('reconnecting');
  });
});

describe('backoff', () => {
  it('is 500 ms x2 up to 15 s with +/-25 % jitter applied after the cap', () => {
    for (const r of [0, 0.5, 0.999]) {
      const b = new Backoff({}, () => r);
      const f = 1 + 0.25 * (2 * r - 1);
      const want = [500, 1000, 2000, 4000, 8000, 15000, 15000].map((x) => Math.round(x * f));
      expect(Array.from({ length: 7 }, () => b.next())).toEqual(want);
    }
  });

  it('waits the backoff delay between attempts and resets only after a stable period', async () => {
    const h = await harness({ random: () => 0.5 });
    h.sock().serverClose(1006);
    expect(h.sockets().length).toBe(1);
    h.clock.advance(499);
    expect(h.sockets().length).toBe(1);
    h.clock.advance(1);
    expect(h.sockets().length).toBe(2);
    h.sock().serverClose(1006);
    h.clock.advance(999);
    expect(h.sockets().length).toBe(2);
    h.clock.advance(1);
    expect(h.sockets().length).toBe(3);
    // Up for less than the stable period: the counter goes on (2 s next).
    await h.handshake();
    h.clock.advance(4000);
    h.sock().serverClose(1006);
    h.clock.advance(1999);
    expect(h.sockets().length).toBe(3);
    h.clock.advance(1);
    expect(h.sockets().length).toBe(4);
    // Up for 5 s: back to 500 ms.
    await h.handshake();
    h.clock.advance(5000);
    h.sock().serverClose(1006);
    h.clock.advance(500);
    expect(h.sockets().length).toBe(5);
  });

  it('stops after maxAttempts', async () => {
    const h = await harness({ backoff: { maxAttempts: 2 }, random: () => 0.5 });
    h.sock().serverClose(1006);
    h.clock.advance(500);
    h.sock().serverClose(1006);
    h.clock.advance(1000);
    h.sock().serverClose(1006);
    expect(h.client.status).toMatchObject({ state: 'disconnected', reason: 'max_attempts' });
  });
});

describe('fatal closes and re-authentication', () => {
  it('a fatal code stops retrying until retryNow()', async () => {
    const h = await harness();
    await h.handshake();
    h.sock().serverClose(4013, 'not permitted');
    expect(h.client.status).toMatchObject({ state: 'disconnected', reason: 'fatal', closeCode: 4013 });
    h.clock.advance(120_000);
    expect(h.sockets().length).toBe(1);
    h.client.retryNow();
    expect(h.sockets().length).toBe(2);
    expect(h.client.state).toBe('reconnecting');
  });

  it('a fatal reason stops retrying', async () => {
    const h = await harness({ fatalReasons: ['banned'] });
    await h.handshake();
    h.sock().serverClose(4000, 'you are banned');
    expect(h.client.status.reason).toBe('fatal');
    expect(h.client.describe()).toBe('disconnected: fatal (close 4000 you are banned)');
  });

  it('4004 re-identifies once with fresh credentials, then stops in error', async () => {
    const creds = vi.fn(async (refresh: boolean) => (refresh ? 'fresh' : 'stale'));
    const h = await harness({ token: undefined, credentials: creds });
    await h.settle();
    h.sock().accept();
    h.sock().frame('HELLO', { heartbeat_ms: 25000, session_ttl_ms: 0 });
    expect(h.sock().last('IDENTIFY')!.token).toBe('stale');
    h.sock().serverClose(4004, 'authentication failed');
    await h.settle();
    expect(creds.mock.calls.map((c) => c[0])).toEqual([false, true]);
    expect(h.sockets().length).toBe(2); // at once, no backoff
    h.sock().accept();
    h.sock().frame('HELLO', { heartbeat_ms: 25000, session_ttl_ms: 0 });
    expect(h.sock().last('IDENTIFY')!.token).toBe('fresh');
    h.sock().serverClose(4004, 'authentication failed');
    await h.settle();
    expect(h.client.status).toMatchObject({ state: 'error', reason: 'auth_failed' });
    h.clock.advance(60_000);
    expect(h.sockets().length).toBe(2);
  });

  it('a static token refused stops in error at once', async () => {
    const h = await harness();
    await h.settle();
    h.sock().accept();
    h.sock().serverClose(4004, 'authentication failed');
    expect(h.client.status).toMatchObject({ state: 'error', reason: 'auth_failed' });
  });

  it('a credentials function that fails or hangs fails the attempt, which is retried', async () => {
    let n = 0;
    const h = await harness({
      token: undefined,
      credentials: () => (++n === 1 ? Promise.reject(new Error('offline backend')) : new Promise<string>(() => {})),
      random: () => 0.5,
      autoConnect: false,
    });
    const errors: string[] = [];
    h.client.on('error', (e) => errors.push(e.code));
    h.client.connect();
    await h.settle();
    expect(errors).toEqual(['credentials_failed']);
    expect(h.sockets().length).toBe(0);
    h.clock.advance(500);
    await h.settle();
    expect(h.client.status.phase).toBe('credentials');
    h.clock.advance(10_000);
    expect(h.client.status.closeReason).toBe('credentials timeout');
  });
});

describe('one attempt at a time, stale sockets', () => {
  it('retryNow() during an attempt starts no second one', async () => {
    const h = await harness();
    h.client.retryNow();
    h.client.connect();
    expect(h.sockets().length).toBe(1);
  });

  it('a dead link is abandoned at once and its late events are ignored', async () => {
    const h = await harness({ random: () => 0.5 });
    const s = await h.handshake({ heartbeatMs: 10_000 });
    h.clock.advance(5000); // first beat at 0.5 x interval
    expect(s.beats()).toBe(1);
    h.clock.advance(10_000);
    expect(s.closed).toEqual({ code: 4000, reason: 'heartbeat timeout' });
    expect(h.client.state).toBe('reconnecting');
    // No close event needed: the next attempt comes after the backoff.
    h.clock.advance(500);
    expect(h.sockets().length).toBe(2);
    // The old socket's late events change nothing.
    s.frame('HEARTBEAT_ACK', { ts: 0 });
    s.serverClose(4004, 'late');
    expect(h.client.state).toBe('reconnecting');
    expect(h.client.metrics.heartbeatTimeouts).toBe(1);
  });

  it('close() during an attempt closes it and makes no further attempts', async () => {
    const h = await harness();
    await h.settle();
    h.sock().accept();
    h.client.close();
    expect(h.sock().closed).toEqual({ code: 1000, reason: 'closed by the application' });
    expect(h.client.status).toMatchObject({ state: 'disconnected', reason: 'manual' });
    h.clock.advance(60_000);
    expect(h.sockets().length).toBe(1);
    h.client.connect();
    expect(h.sockets().length).toBe(2);
  });
});

describe('delivery', () => {
  it('drops duplicates by (room, epoch, offset) and resumes from the position on a gap', async () => {
    const h = await harness({ random: () => 0.5 });
    const got: number[] = [];
    h.client.join('r', { onEvent: (e) => got.push(e.offset) });
    const s = await h.handshake();
    s.frame('JOINED', { room: 'r', epoch: 3, offset: 0, recovered: true });
    s.frame('EVENT', ev('r', 3, 1));
    s.frame('EVENT', ev('r', 3, 1));
    s.frame('EVENT', ev('r', 3, 2));
    expect(got).toEqual([1, 2]);
    expect(h.client.metrics.duplicates).toBe(1);
    s.frame('EVENT', ev('r', 3, 4));
    expect(got).toEqual([1, 2]);
    expect(s.closed).toEqual({ code: 4000, reason: 'gap in r' });
    h.clock.advance(500);
    const s2 = h.sock();
    s2.accept();
    s2.frame('HELLO', { heartbeat_ms: 25000, session_ttl_ms: 60000 });
    expect(s2.last('RESUME')).toMatchObject({ session_id: 's1', rooms: [{ room: 'r', epoch: 3, offset: 2 }] });
    s2.frame('RESUMED', { session_id: 's1', resume_token: 'rt2' });
    s2.frame('JOINED', { room: 'r', epoch: 3, offset: 4, recovered: true });
    s2.frame('EVENT', ev('r', 3, 3, 'x'));
    s2.frame('EVENT', ev('r', 3, 4));
    expect(got).toEqual([1, 2, 3, 4]);
    expect(h.client.state).toBe('connected');
  });

  it('reports history lost and continues from the new head, never hiding it', async () => {
    const h = await harness();
    const lost = vi.fn();
    const got: number[] = [];
    h.client.join('r', { since: { epoch: 1, offset: 9 }, onHistoryLost: lost, onEvent: (e) => got.push(e.offset) });
    const s = await h.handshake();
    s.frame('JOINED', { room: 'r', epoch: 2, offset: 5, recovered: false });
    expect(lost).toHaveBeenCalledWith({
      room: 'r',
      lastDelivered: { epoch: 1, offset: 9 },
      resumedAt: { epoch: 2, offset: 5 },
    });
    expect(h.client.state).toBe('connected');
    s.frame('EVENT', ev('r', 2, 6));
    expect(got).toEqual([6]);
  });

  it('an event of another epoch is a gap', async () => {
    const h = await harness();
    h.client.join('r');
    const s = await h.handshake();
    s.frame('JOINED', { room: 'r', epoch: 3, offset: 0, recovered: true });
    s.frame('EVENT', ev('r', 4, 1));
    expect(s.closed?.code).toBe(4000);
  });

  it('INVALID_SESSION: identifies on the same connection and rejoins with since', async () => {
    const h = await harness({ random: () => 0.5 });
    h.client.join('r');
    let s = await h.handshake();
    s.frame('JOINED', { room: 'r', epoch: 3, offset: 7, recovered: true });
    s.serverClose(1006);
    h.clock.advance(500);
    s = h.sock();
    s.accept();
    s.frame('HELLO', { heartbeat_ms: 25000, session_ttl_ms: 60000 });
    s.frame('INVALID_SESSION', { resumable: false });
    expect(s.ops()).toEqual(['RESUME', 'IDENTIFY']);
    s.frame('READY', { session_id: 's2', resume_token: 'rt', user: 'alice' });
    expect(s.last('JOIN')).toEqual({ room: 'r', since: { epoch: 3, offset: 7 } });
  });

  it('a fatal JOIN_ERROR puts that room in error while the others rejoin', async () => {
    const h = await harness();
    const st: string[] = [];
    h.client.join('ok');
    h.client.join('no', { onStatus: (x) => st.push(`${x.state}${x.code ? ':' + x.code : ''}`) });
    const s = await h.handshake();
    s.frame('JOIN_ERROR', { room: 'no', code: 'not_permitted', reason: 'no', fatal: true });
    expect(h.client.state).toBe('connecting');
    s.frame('JOINED', { room: 'ok', epoch: 1, offset: 0, recovered: true });
    expect(h.client.state).toBe('connected');
    expect(st).toEqual(['connecting', 'error:not_permitted']);
    expect(h.client.roomState('no')).toBe('disconnected');
  });

  it('a retryable JOIN_ERROR is retried after 1 s, doubling', async () => {
    const h = await harness();
    h.client.join('r');
    const s = await h.handshake();
    s.frame('JOIN_ERROR', { room: 'r', code: 'rate_limited', fatal: false });
    expect(h.client.state).toBe('connected');
    h.clock.advance(999);
    expect(s.ops().filter((o) => o === 'JOIN').length).toBe(1);
    h.clock.advance(1);
    expect(s.ops().filter((o) => o === 'JOIN').length).toBe(2);
    s.frame('JOIN_ERROR', { room: 'r', code: 'rate_limited', fatal: false });
    h.clock.advance(1999);
    expect(s.ops().filter((o) => o === 'JOIN').length).toBe(2);
    h.clock.advance(1);
    expect(s.ops().filter((o) => o === 'JOIN').length).toBe(3);
  });

  it('an unanswered JOIN is resent, and after 3 the link is replaced', async () => {
    const h = await harness({ joinTimeoutMs: 3000 });
    h.client.join('r');
    const s = await h.handshake();
    h.clock.advance(3000);
    h.clock.advance(3000);
    expect(s.ops().filter((o) => o === 'JOIN').length).toBe(3);
    h.clock.advance(3000);
    expect(s.closed).toEqual({ code: 4000, reason: 'join timeout' });
  });

  it('queued joins complete once connected', async () => {
    const h = await harness();
    const rooms = ['a', 'b', 'c'].map((n) => h.client.join(n));
    expect(rooms.map((r) => r.status)).toEqual(['connecting', 'connecting', 'connecting']);
    const s = await h.handshake();
    for (const n of ['a', 'b', 'c']) s.frame('JOINED', { room: n, epoch: 1, offset: 0, recovered: true });
    expect(rooms.map((r) => r.status)).toEqual(['joined', 'joined', 'joined']);
    expect(() => h.client.join('a')).toThrow(TetherError);
    expect(() => h.client.join('')).toThrow(/room name/);
  });
});

describe('publishing', () => {
  it('holds a retryable NACK and everything behind it, keeping order', async () => {
    const h = await harness();
    const s = await h.handshake();
    const ps = [1, 2, 3].map((n) => h.client.publish('r', n));
    const ids = s.sent.filter((m) => m.op === 'PUBLISH').map((m) => m.d.id as string);
    expect(ids.length).toBe(3);
    s.frame('NACK', { id: ids[0], code: 'rate_limited', retry_after_ms: 300 });
    s.frame('NACK', { id: ids[1], code: 'rate_limited', reason: `held behind ${ids[0]}`, retry_after_ms: 300 });
    s.frame('NACK', { id: ids[2], code: 'rate_limited', reason: `held behind ${ids[0]}`, retry_after_ms: 300 });
    h.clock.advance(299);
    expect(s.sent.filter((m) => m.op === 'PUBLISH').length).toBe(3);
    h.clock.advance(1);
    const resent = s.sent.filter((m) => m.op === 'PUBLISH').slice(3).map((m) => m.d.id);
    expect(resent).toEqual(ids);
    ids.forEach((id, i) => s.frame('ACK', { id, room: 'r', epoch: 1, offset: i + 1 }));
    expect((await Promise.all(ps)).map((a) => a.offset)).toEqual([1, 2, 3]);
  });

  it('a final NACK rejects with its code', async () => {
    const h = await harness();
    const s = await h.handshake();
    const p = h.client.publish('r', 1);
    s.frame('NACK', { id: s.last('PUBLISH')!.id, code: 'not_permitted', reason: 'no' });
    await expect(p).rejects.toMatchObject({ code: 'not_permitted', possiblyDelivered: true });
  });

  it('resends unacknowledged publishes after a reconnect, once each, in order', async () => {
    const h = await harness({ random: () => 0.5 });
    let s = await h.handshake();
    const ps = [1, 2, 3].map((n) => h.client.publish('r', n));
    const ids = s.sent.filter((m) => m.op === 'PUBLISH').map((m) => m.d.id);
    s.frame('ACK', { id: ids[0], room: 'r', epoch: 1, offset: 1 });
    s.serverClose(1006);
    h.clock.advance(500);
    s = await h.handshake();
    expect(s.sent.filter((m) => m.op === 'PUBLISH').map((m) => m.d.id)).toEqual(ids.slice(1));
    expect(h.client.status).toMatchObject({ phase: 'sending', sendingTotal: 2, sendingDone: 0 });
    s.frame('ACK', { id: ids[1], room: 'r', epoch: 1, offset: 2 });
    expect(h.client.describe()).toBe('connected (sending 1 of 2)');
    s.frame('ACK', { id: ids[2], room: 'r', epoch: 1, offset: 3 });
    expect(h.client.status.phase).toBe('none');
    expect((await Promise.all(ps)).map((a) => a.offset)).toEqual([1, 2, 3]);
  });

  it('keeps at most inflightMax publishes unanswered', async () => {
    const h = await harness({ outbox: { inflightMax: 2 } });
    const s = await h.handshake();
    for (let i = 0; i < 5; i++) void h.client.publish('r', i);
    const sent = () => s.sent.filter((m) => m.op === 'PUBLISH');
    expect(sent().length).toBe(2);
    s.frame('ACK', { id: sent()[0].d.id, room: 'r', epoch: 1, offset: 1 });
    expect(sent().length).toBe(3);
  });

  it('bounds the outbox: reject, or drop the oldest with an event', async () => {
    const h = await harness({ outbox: { maxCount: 2 } });
    void h.client.publish('r', 1);
    void h.client.publish('r', 2);
    await expect(h.client.publish('r', 3)).rejects.toMatchObject({ code: 'outbox_full' });
    const d = await harness({ outbox: { maxCount: 2, overflow: 'dropOldest' } });
    const events: string[] = [];
    d.client.on('outbox', (e) => events.push(e.type === 'failed' ? e.error.code : e.type));
    const first = d.client.publish('r', 1);
    void d.client.publish('r', 2);
    void d.client.publish('r', 3);
    await expect(first).rejects.toMatchObject({ code: 'dropped' });
    expect(events).toEqual(['dropped']);
    expect(d.client.status.queued).toBe(2);
  });

  it('refuses bad input with clear errors', async () => {
    const h = await harness();
    await expect(h.client.publish('', 1)).rejects.toMatchObject({ code: 'invalid_room' });
    await expect(h.client.publish('r', undefined)).rejects.toMatchObject({ code: 'invalid_data' });
    await expect(h.client.publish('r', 'x'.repeat(1 << 20))).rejects.toMatchObject({ code: 'too_large' });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await expect(h.client.publish('r', cyclic)).rejects.toMatchObject({ code: 'invalid_data' });
    expect(() => new TetherClient({ url: 'http://x', token: 't', WebSocket: FakeSocket })).toThrow(/ws:\/\//);
    expect(() => new TetherClient({ url: 'ws://x', WebSocket: FakeSocket })).toThrow(/token/);
  });
});

describe('liveness in a throttled tab', () => {
  it('judges the ack deadline by the wall clock and not while a received frame waits', async () => {
    const h = await harness({ random: () => 0 });
    const s = await h.handshake({ heartbeatMs: 10_000 });
    h.clock.advance(0);
    expect(s.beats()).toBe(1);
    const ts = s.last('HEARTBEAT')!.ts;
    // Hidden: no timer runs for a minute; the ack arrived meanwhile and is
    // handled before the late timers (the frame was queued first).
    h.clock.jump(60_000);
    s.frame('HEARTBEAT_ACK', { ts });
    h.clock.advance(0);
    expect(s.closed).toBeUndefined();
    expect(h.client.state).toBe('connected');
  });

  it('a late liveness timer with a frame still queued decides in the next task', async () => {
    const h = await harness({ random: () => 0 });
    const s = await h.handshake({ heartbeatMs: 10_000 });
    h.clock.advance(0);
    const ts = s.last('HEARTBEAT')!.ts;
    h.clock.jump(60_000);
    // The timer runs first; the frame is handled in the task after it.
    (h.client as unknown as { service(): void }).service();
    expect(s.closed).toBeUndefined();
    s.frame('HEARTBEAT_ACK', { ts });
    h.clock.advance(0);
    expect(s.closed).toBeUndefined();
  });

  it('no frame at all: dead once the late timer runs', async () => {
    const h = await harness({ random: () => 0 });
    const s = await h.handshake({ heartbeatMs: 10_000 });
    h.clock.advance(0);
    h.clock.jump(60_000);
    h.clock.advance(0);
    expect(s.closed?.reason).toBe('heartbeat timeout');
  });

  it('beats when a frame arrives and the beat is overdue by the wall clock', async () => {
    const h = await harness({ random: () => 0.99 });
    const s = await h.handshake({ heartbeatMs: 10_000 });
    h.client.join('r');
    h.clock.jump(20_000);
    expect(s.beats()).toBe(0);
    s.frame('JOINED', { room: 'r', epoch: 1, offset: 0, recovered: true });
    expect(s.beats()).toBe(1);
  });

  it('sends a probe when the page becomes visible again', async () => {
    const h = await harness({ random: () => 0.99 });
    const s = await h.handshake({ heartbeatMs: 10_000 });
    expect(s.beats()).toBe(0);
    h.env.fire({ type: 'visible' });
    expect(s.beats()).toBe(1);
    const lat: number[] = [];
    h.client.on('latency', (ms) => lat.push(ms));
    h.clock.jump(42);
    s.frame('HEARTBEAT_ACK', { ts: s.last('HEARTBEAT')!.ts });
    expect(lat).toEqual([42]);
  });
});

describe('offline and online', () => {
  it('offline closes with a code browsers accept and pauses; online reconnects at once with backoff reset', async () => {
    const h = await harness({ random: () => 0.5 });
    await h.handshake();
    for (let i = 0; i < 3; i++) {
      const n = h.sockets().length;
      h.sock().serverClose(1006);
      while (h.sockets().length === n) h.clock.advance(100);
    }
    expect(h.client.status.attempt).toBe(4);
    h.sock().accept();
    h.env.fire({ type: 'offline' });
    const last = h.sock();
    expect(last.closed).toEqual({ code: 1000, reason: 'offline' });
    expect(h.client.status).toMatchObject({ state: 'disconnected', reason: 'offline', offline: true });
    const n = h.sockets().length;
    h.client.retryNow(); // the browser says offline: only the probe tries
    h.clock.advance(29_999);
    expect(h.sockets().length).toBe(n);
    h.env.fire({ type: 'online' });
    expect(h.sockets().length).toBe(n + 1);
    expect(h.client.status.attempt).toBe(1);
  });

  it('recovers without an online event: a slow probe connects anyway', async () => {
    const h = await harness({ random: () => 0.5 });
    await h.handshake();
    h.env.fire({ type: 'offline' });
    h.env.isOnline = true; // the network is back, the browser says nothing
    h.clock.advance(30_000);
    expect(h.sockets().length).toBe(2);
    await h.handshake({ session: 's1' });
    expect(h.client.status).toMatchObject({ state: 'connected', offline: false });
  });
});

describe('waitConnected', () => {
  it('resolves on the next connected, times out, aborts, and rejects on a fatal stop', async () => {
    const h = await harness();
    const w = h.client.waitConnected();
    const t = h.client.waitConnected({ timeoutMs: 100 });
    const ac = new AbortController();
    const a = h.client.waitConnected({ signal: ac.signal });
    ac.abort();
    await expect(a).rejects.toMatchObject({ code: 'aborted' });
    h.clock.advance(100);
    await expect(t).rejects.toMatchObject({ code: 'timeout' });
    await h.handshake();
    await expect(w).resolves.toBeUndefined();
    await expect(h.client.waitConnected()).resolves.toBeUndefined();
    h.sock().serverClose(1006);
    const f = h.client.waitConnected();
    h.clock.advance(1000);
    h.sock().serverClose(4013, 'no');
    await expect(f).rejects.toMatchObject({ code: 'fatal' });
  });
});

describe('server requests and bad frames', () => {
  it('RECONNECT waits retry_after_ms and resumes', async () => {
    const h = await harness();
    const s = await h.handshake();
    s.frame('RECONNECT', { reason: 'draining', retry_after_ms: 1500 });
    expect(s.closed).toEqual({ code: 1000, reason: 'draining' });
    h.clock.advance(1499);
    expect(h.sockets().length).toBe(1);
    h.clock.advance(1);
    expect(h.sockets().length).toBe(2);
  });

  it('closes with the protocol codes on undecodable frames', async () => {
    for (const [frame, code] of [
      ['{nope', 4002],
      [JSON.stringify({ op: 'WHAT', d: {} }), 4001],
      [JSON.stringify({ op: 'EVENT', d: { room: 'r', epoch: 1, offset: 2 ** 60, data: 1 } }), 4002],
    ] as const) {
      const h = await harness();
      const s = await h.handshake();
      s.raw(frame);
      expect(s.closed?.code).toBe(code);
      expect(h.client.state).toBe('reconnecting');
    }
    const h = await harness();
    const s = await h.handshake();
    s.raw(new Uint8Array([1]));
    expect(s.closed?.code).toBe(4002);
  });

  it('a frame above 1 MiB closes with a code browsers accept (1009 would throw)', async () => {
    const h = await harness();
    const s = await h.handshake();
    s.raw(JSON.stringify({ op: 'EVENT', d: { room: 'r', epoch: 1, offset: 1, data: 'x'.repeat(1 << 20) } }));
    expect(s.closed).toEqual({ code: 1000, reason: 'message too big' });
  });

  it('a server that does not select tether.v1 is a fatal version mismatch', async () => {
    const h = await harness();
    await h.settle();
    h.sock().accept('');
    expect(h.client.status).toMatchObject({ state: 'disconnected', reason: 'fatal', closeCode: 4012 });
  });
});

describe('the session across reloads', () => {
  it('a reload resumes the session and positions; a duplicated tab does not take it over', async () => {
    const store = new MapStorage();
    const h = await harness({ session: store });
    h.client.join('r');
    const s = await h.handshake();
    s.frame('JOINED', { room: 'r', epoch: 5, offset: 3, recovered: true });
    s.frame('EVENT', ev('r', 5, 4));
    h.clock.advance(1000); // positions are saved at most once a second (and at pagehide)
    // A duplicated tab copies sessionStorage while the first page lives.
    const dup = await harness({ session: store.copy() });
    dup.client.join('r');
    await dup.settle();
    dup.sock().accept();
    dup.sock().frame('HELLO', { heartbeat_ms: 25000, session_ttl_ms: 60000 });
    expect(dup.sock().ops()).toEqual(['IDENTIFY']);
    dup.sock().frame('READY', { session_id: 's9', resume_token: 'x', user: 'alice' });
    expect(dup.sock().last('JOIN')).toEqual({ room: 'r', since: { epoch: 5, offset: 4 } });
    // The first page reloads: pagehide, then a new client on the same storage.
    h.env.fire({ type: 'pagehide', persisted: false });
    expect(s.closed?.code).toBe(1000);
    h.client.dispose();
    const r = await harness({ session: store });
    r.client.join('r');
    await r.settle();
    r.sock().accept();
    r.sock().frame('HELLO', { heartbeat_ms: 25000, session_ttl_ms: 60000 });
    expect(r.sock().last('RESUME')).toEqual({
      session_id: 's1',
      resume_token: 'rt-1',
      rooms: [{ room: 'r', epoch: 5, offset: 4 }],
    });
  });

  it('pageshow from the back/forward cache resumes', async () => {
    const h = await harness({ random: () => 0.5 });
    const s = await h.handshake();
    h.env.fire({ type: 'pagehide', persisted: true });
    expect(s.closed?.code).toBe(1000);
    h.clock.advance(60_000);
    expect(h.sockets().length).toBe(1);
    h.env.fire({ type: 'pageshow', persisted: true });
    expect(h.sockets().length).toBe(2);
    h.sock().accept();
    h.sock().frame('HELLO', { heartbeat_ms: 25000, session_ttl_ms: 60000 });
    expect(h.sock().ops()).toEqual(['RESUME']);
  });
});
