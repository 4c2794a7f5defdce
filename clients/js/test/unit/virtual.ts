// Virtual time for the client's unit tests: a clock whose timers run only
// when the test advances it, a WebSocket double that records what the
// client does and lets the test play the server, and an environment whose
// events the test fires. Nothing here sleeps: every test is deterministic.

import type { Clock, Environment, EnvironmentEvent, KeyValueStorage, WebSocketLike } from '../../src/index.js';
import { TetherClient, type ClientOptions } from '../../src/index.js';

export class VirtualClock implements Clock {
  private t = 1_000_000;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  now() {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number) {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }
  clearTimeout(h: unknown) {
    this.timers.delete(h as number);
  }
  /** Runs every timer due within `ms`, in deadline order, moving the clock to each. */
  advance(ms: number) {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = end;
  }
  /** Moves the wall clock without running timers: a throttled hidden tab. */
  jump(ms: number) {
    this.t += ms;
  }
  pending() {
    return this.timers.size;
  }
}

/** Close codes a browser's WebSocket.close() accepts (else it throws InvalidAccessError). */
export function browserAcceptsClose(code: number | undefined) {
  return code === undefined || code === 1000 || (code >= 3000 && code <= 4999);
}

export class FakeSocket implements WebSocketLike {
  protocol = '';
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: Array<{ op: string; d: Record<string, unknown> }> = [];
  closed?: { code?: number; reason?: string };
  constructor(
    readonly url: string,
    readonly protocols?: string | string[],
  ) {}
  send(data: string) {
    if (this.closed) throw new Error('send after close');
    this.sent.push(JSON.parse(data));
  }
  close(code?: number, reason?: string) {
    if (!browserAcceptsClose(code)) throw new Error(`InvalidAccessError: close code ${code}`);
    this.closed ??= { code, reason };
  }
  // ---- the test plays the server ----
  accept(protocol = 'tether.v1') {
    this.protocol = protocol;
    this.onopen?.({});
  }
  frame(op: string, d: object = {}) {
    this.onmessage?.({ data: JSON.stringify({ op, d }) });
  }
  raw(data: unknown) {
    this.onmessage?.({ data });
  }
  serverClose(code: number, reason = '') {
    this.onclose?.({ code, reason });
  }
  /** The ops sent, heartbeats left out (their first one is at a random point). */
  ops() {
    return this.sent.map((m) => m.op).filter((op) => op !== 'HEARTBEAT');
  }
  beats() {
    return this.sent.filter((m) => m.op === 'HEARTBEAT').length;
  }
  last(op: string) {
    return [...this.sent].reverse().find((m) => m.op === op)?.d;
  }
}

export class TestEnvironment implements Environment {
  isOnline = true;
  private fns = new Set<(e: EnvironmentEvent) => void>();
  online() {
    return this.isOnline;
  }
  subscribe(fn: (e: EnvironmentEvent) => void) {
    this.fns.add(fn);
    return () => this.fns.delete(fn);
  }
  fire(e: EnvironmentEvent) {
    if (e.type === 'online') this.isOnline = true;
    if (e.type === 'offline') this.isOnline = false;
    for (const fn of [...this.fns]) fn(e);
  }
}

export class MapStorage implements KeyValueStorage {
  m = new Map<string, string>();
  getItem(k: string) {
    return this.m.get(k) ?? null;
  }
  setItem(k: string, v: string) {
    this.m.set(k, v);
  }
  removeItem(k: string) {
    this.m.delete(k);
  }
  copy() {
    const c = new MapStorage();
    c.m = new Map(this.m);
    return c;
  }
}

export interface Harness {
  clock: VirtualClock;
  env: TestEnvironment;
  client: TetherClient;
  /** The newest socket. */
  sock(): FakeSocket;
  sockets(): FakeSocket[];
  /** Lets promise callbacks (credentials, outbox load) run. */
  settle(): Promise<void>;
  /** Accepts the newest socket and plays HELLO + READY. */
  handshake(opts?: { user?: string; session?: string; heartbeatMs?: number }): Promise<FakeSocket>;
}

export async function harness(opts: Partial<ClientOptions> = {}): Promise<Harness> {
  const all: FakeSocket[] = [];
  class Socket extends FakeSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      all.push(this);
    }
  }
  const clock = new VirtualClock();
  const env = new TestEnvironment();
  let seed = 1;
  const client = new TetherClient({
    url: 'ws://gateway.test/ws',
    token: 'tok',
    WebSocket: Socket,
    clock,
    environment: env,
    session: false,
    outbox: { storage: 'memory', ...(opts.outbox ?? {}) },
    // A fixed sequence: jitter and the first heartbeat are reproducible.
    random: () => ((seed = (seed * 16807) % 2147483647) / 2147483647),
    ...opts,
  });
  const settle = async () => {
    for (let i = 0; i < 10; i++) await Promise.resolve();
  };
  await settle();
  const h: Harness = {
    clock,
    env,
    client,
    sock: () => all[all.length - 1],
    sockets: () => all,
    settle,
    async handshake({ user = 'alice', session = 's1', heartbeatMs = 25_000 } = {}) {
      await settle();
      const s = h.sock();
      s.accept();
      s.frame('HELLO', { heartbeat_ms: heartbeatMs, session_ttl_ms: 60_000 });
      const resuming = s.last('RESUME');
      if (resuming) s.frame('RESUMED', { session_id: session, resume_token: `rt-${all.length}` });
      else s.frame('READY', { session_id: session, resume_token: `rt-${all.length}`, user });
      await settle();
      return s;
    },
  };
  return h;
}
