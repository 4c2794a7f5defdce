// TetherClient: the browser and Node.js client of the tether protocol v1
// (docs/PROTOCOL.md), with the C++ client's rules (docs/JS_CLIENT.md):
// - one attempt at a time: credentials -> open -> HELLO -> IDENTIFY or
//   RESUME -> rejoin rooms with their positions -> replay to each room's
//   head -> `connected` -> flush the outbox in order;
// - backoff (500 ms x2 to 15 s, +/-25 % after the cap), reset after 5 s up;
// - fatal close codes and reasons stop retrying until connect()/retryNow();
//   4003/4004 re-identify once with fresh credentials first;
// - events deduplicated by (room, epoch, offset); a gap closes the link and
//   resumes from the last position, never skips;
// - every deadline is judged by the wall clock (hidden tabs run timers late),
//   a dead link is abandoned at once and its socket's late events ignored.
//
// All timing goes through one table of named deadlines served by a single
// timer of the injectable Clock, so the tests drive it in virtual time.

import { Backoff, type BackoffOptions, RETRY_AFTER_MAX_MS } from './backoff.js';
import { type Clock, systemClock } from './clock.js';
import { browserEnvironment, type Environment, type EnvironmentEvent } from './environment.js';
import { decode, encode, FRAME_MAX, type Position, type ServerMessage } from './protocol.js';
import {
  type KeyValueStorage,
  openOutbox,
  type OutboxStorageChoice,
  type OutboxStorageKind,
  type OutboxStore,
  type PendingMessage,
  readList,
  webStorage,
} from './storage.js';

export type ClientState = 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'error';
export type RoomState = 'connecting' | 'joined' | 'reconnecting' | 'disconnected' | 'error';
/** What the client is doing within its state. */
export type Phase =
  | 'none'
  | 'credentials'
  | 'opening'
  | 'authenticating'
  | 'resuming'
  | 'joining'
  | 'catching_up'
  | 'sending';
/** Why the client is disconnected or in error. */
export type StopReason =
  | 'none'
  | 'manual'
  | 'offline'
  | 'suspended'
  | 'fatal'
  | 'max_attempts'
  | 'auth_failed';

export interface ClientStatus {
  state: ClientState;
  phase: Phase;
  reason: StopReason;
  /** Attempt within the current outage (0 while connected). */
  attempt: number;
  /** Wall-clock time (ms) of the next attempt, while waiting for it. */
  nextRetryAt?: number;
  /** The last close code received or sent (1006: the link failed without one; 0: none yet). */
  closeCode: number;
  closeReason: string;
  offline: boolean;
  /** Messages in the outbox. */
  queued: number;
  /** "sending x of y" after a reconnect. */
  sendingDone: number;
  sendingTotal: number;
  /** Where the outbox is kept (known once it is loaded). */
  outboxStorage?: OutboxStorageKind;
}

/** The minimal WebSocket the client needs: the browser's, Node 22's, or `ws`. */
export interface WebSocketLike {
  readonly protocol: string;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** An error of the client, with a stable `code` (docs/JS_CLIENT.md, "Errors"). */
export class TetherError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** Publishes: true when it was sent at least once before failing. */
    readonly possiblyDelivered = false,
  ) {
    super(message);
    this.name = 'TetherError';
  }
}

export interface Ack {
  id: string;
  room: string;
  epoch: number;
  offset: number;
}
export interface RoomEvent {
  room: string;
  epoch: number;
  offset: number;
  data: unknown;
  /** True when part of the catch-up after (re)joining. */
  replayed: boolean;
}
export interface HistoryLost {
  room: string;
  /** The last position the application got. */
  lastDelivered: Position;
  /** Where the room continues. */
  resumedAt: Position;
}
export interface RoomStatusInfo {
  state: RoomState;
  code?: string;
  reason?: string;
}
export interface JoinOptions {
  /** Replay everything after this position (default: the saved one, else from now). */
  since?: Position;
  onEvent?: (e: RoomEvent) => void;
  onStatus?: (s: RoomStatusInfo) => void;
  /** Events were lost to this client: refetch the application's state. */
  onHistoryLost?: (h: HistoryLost) => void;
}
export interface SessionInfo {
  sessionId: string;
  user: string;
  resumed: boolean;
}
/** What happened to a publish, for every publish, those restored after a reload included. */
export type OutboxEvent =
  | ({ type: 'acked' } & Ack)
  | { type: 'failed'; id: string; room: string; error: TetherError };

export interface ClientOptions {
  /** ws:// or wss:// URL of the gateway. */
  url: string;
  /** A static access token ... */
  token?: string;
  /** ... or a function that fetches one; `refresh` is true when the last one was refused. */
  credentials?: (refresh: boolean) => string | Promise<string>;
  /** WebSocket implementation (default: the global one; in Node 20 pass `ws`). */
  WebSocket?: WebSocketConstructor;
  backoff?: BackoffOptions;
  /** Close codes that stop retrying. Default 4003, 4004, 4012, 4013, 4014. */
  fatalCodes?: number[];
  /** Substrings of a close reason that stop retrying. */
  fatalReasons?: string[];
  /** Heartbeat interval (default: the server's HELLO value). */
  pingIntervalMs?: number;
  /** A heartbeat not answered within this closes the link (default: the interval). */
  pingTimeoutMs?: number;
  /** TCP + TLS + WebSocket handshake. Default 10 s. */
  openTimeoutMs?: number;
  /** Open -> READY/RESUMED. Default 10 s. */
  authTimeoutMs?: number;
  /** The credentials callback must answer within this. Default 10 s. */
  credentialsTimeoutMs?: number;
  /** A JOIN must be answered within this (then it is resent; 3 unanswered: new link). Default 10 s. */
  joinTimeoutMs?: number;
  /** Authenticated -> rooms rejoined and caught up. Default 30 s. */
  syncTimeoutMs?: number;
  /** Bounds and storage of the outbox. */
  outbox?: {
    storage?: OutboxStorageChoice;
    maxCount?: number;
    maxBytes?: number;
    /** What a publish beyond the bounds does. Default 'reject'. */
    overflow?: 'reject' | 'dropOldest';
    /** Publishes sent and not yet answered, at most. Default 64. */
    inflightMax?: number;
  };
  /** Where the session and positions are saved (default sessionStorage; false: nowhere). */
  session?: KeyValueStorage | false;
  /** Names the saved outbox and session (default: the URL). */
  storageKey?: string;
  /** Rooms tracked at most. Default 1000. */
  maxRooms?: number;
  /** Network and page events (default: the browser's window, else none). */
  environment?: Environment;
  clock?: Clock;
  random?: () => number;
  /** Offline: try anyway this often, for browsers that miss `online`. Default 30 s. */
  offlineProbeMs?: number;
  /** Connect in the constructor. Default true. */
  autoConnect?: boolean;
  /** Sent in IDENTIFY. */
  clientInfo?: { name: string; version: string };
}

export const VERSION = '0.1.0';
const SUBPROTOCOL = 'tether.v1';
const ROOM_MAX = 200;
const FINAL_NACKS = ['bad_room', 'not_permitted', 'too_large'];
const RETRY_NACKS = ['rate_limited', 'internal', 'unavailable'];

type TimerName =
  | 'retry'
  | 'stage'
  | 'heartbeat'
  | 'liveness'
  | 'verdict'
  | 'join'
  | 'outbox'
  | 'stable'
  | 'probe'
  | 'save';
type Stage = 'credentials' | 'opening' | 'hello' | 'auth' | 'sync' | 'up';

interface Attempt {
  id: number;
  stage: Stage;
  ws?: WebSocketLike;
  token?: string;
  resuming: boolean;
  /** The rooms listed in RESUME (re-joined by the server on RESUMED). */
  resumed: Set<string>;
  interval: number;
  timeout: number;
  nextBeat: number;
  /** ts of the HEARTBEAT awaiting its ack. */
  beatTs?: number;
  /** Link declared dead at this wall-clock time unless a frame arrives first. */
  deadAt?: number;
  lastRx: number;
}

interface RoomEntry {
  name: string;
  room: Room;
  opts: JoinOptions;
  position?: Position;
  join: 'idle' | 'sent' | 'retry' | 'joined';
  attempts: number;
  errors: number;
  deadline: number;
  target: number;
  everJoined: boolean;
  reported?: RoomState;
}

interface Entry extends PendingMessage {
  bytes: number;
  sentOn: number;
  everSent: boolean;
  notBefore?: number;
  resolve?: (a: Ack) => void;
  reject?: (e: TetherError) => void;
}

type Handlers = {
  state: (s: ClientState, status: ClientStatus) => void;
  status: (s: ClientStatus) => void;
  latency: (rttMs: number) => void;
  session: (s: SessionInfo) => void;
  error: (e: TetherError) => void;
  outbox: (e: OutboxEvent) => void;
};

interface SavedSession {
  v: 1;
  tab: string;
  live: boolean;
  sessionId?: string;
  resumeToken?: string;
  user?: string;
  rooms: Record<string, [number, number]>;
}

function randomHex(random: () => number): string {
  const c = (globalThis as { crypto?: { getRandomValues?: (a: Uint32Array) => Uint32Array } }).crypto;
  const a = new Uint32Array(2);
  if (c?.getRandomValues) c.getRandomValues(a);
  else for (let i = 0; i < 2; i++) a[i] = Math.floor(random() * 2 ** 32);
  return Array.from(a, (x) => x.toString(16).padStart(8, '0')).join('');
}

const utf8 = (s: string) => new TextEncoder().encode(s).length;

/** A browser accepts close(code) only for 1000 and 3000-4999; reasons up to 123 bytes. */
function safeClose(ws: WebSocketLike, code: number, reason: string) {
  const ok = code === 1000 || (code >= 3000 && code <= 4999);
  let r = reason;
  while (utf8(r) > 123) r = r.slice(0, -1);
  try {
    ws.close(ok ? code : 1000, r);
  } catch {
    // already closing
  }
}

/** A room the client tracks. */
export class Room {
  /** @internal */
  constructor(
    private readonly client: TetherClient,
    readonly name: string,
  ) {}
  get status(): RoomState {
    return this.client.roomState(this.name);
  }
  /** The last position delivered, once joined. */
  get position(): Position | undefined {
    return this.client.roomPosition(this.name);
  }
  /** Publishes `data` (any JSON value); resolves with the ack, rejects with a TetherError. */
  publish(data: unknown): Promise<Ack> {
    return this.client.publish(this.name, data);
  }
  leave(): void {
    this.client.leave(this.name);
  }
}

export class TetherClient {
  private readonly o: ClientOptions;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly backoff: Backoff;
  private readonly WS: WebSocketConstructor;
  private readonly env: Environment;
  private readonly fatalCodes: number[];
  private readonly key: string;
  private readonly ss: KeyValueStorage | undefined;
  private readonly unsubscribeEnv: () => void;

  private want = false;
  private inError = false;
  private online: boolean;
  private suspended = false;
  private stop: StopReason = 'none';
  private connectedOnce = false;
  private escalated = false;
  private needRefresh = false;
  private attempt?: Attempt;
  private attemptSeq = 0;
  private retryAfter?: number;
  private closeCode = 0;
  private closeReason = '';
  private session?: { id: string; token: string; user: string };
  private saved: SavedSession;

  private readonly rooms = new Map<string, RoomEntry>();
  private readonly positions = new Map<string, Position>();
  private outbox: Entry[] = [];
  private outboxBytes = 0;
  private store?: OutboxStore;
  private readonly idPrefix: string;
  private nextId = 1;
  private sendingDone = 0;
  private sendingTotal = 0;

  private readonly deadlines = new Map<TimerName, number>();
  private timer: unknown;
  private timerAt = Infinity;
  private readonly handlers: { [K in keyof Handlers]: Set<Handlers[K]> } = {
    state: new Set(),
    status: new Set(),
    latency: new Set(),
    session: new Set(),
    error: new Set(),
    outbox: new Set(),
  };
  private waiters = new Set<{ resolve: () => void; reject: (e: TetherError) => void }>();
  private last?: ClientStatus;

  /** Counters since creation. */
  readonly metrics = {
    attempts: 0,
    connects: 0,
    reconnects: 0,
    delivered: 0,
    replayed: 0,
    duplicates: 0,
    historyLost: 0,
    sent: 0,
    acked: 0,
    failed: 0,
    heartbeatTimeouts: 0,
  };

  constructor(options: ClientOptions) {
    this.o = { ...options };
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new TypeError(`tether: invalid url ${options.url}`);
    }
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:')
      throw new TypeError(`tether: the url must be ws:// or wss://, not ${url.protocol}`);
    if (options.token === undefined && !options.credentials)
      throw new TypeError('tether: give a token or a credentials function');
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) throw new TypeError('tether: no global WebSocket here: pass one (e.g. `ws`) as the WebSocket option');
    this.WS = WS;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.backoff = new Backoff(options.backoff, this.random);
    this.env = options.environment ?? browserEnvironment();
    this.online = this.env.online();
    this.fatalCodes = options.fatalCodes ?? [4003, 4004, 4012, 4013, 4014];
    this.key = options.storageKey ?? options.url;
    this.idPrefix = randomHex(this.random);
    this.ss = options.session === false ? undefined : (options.session ?? webStorage('sessionStorage'));
    this.saved = this.loadSession();
    this.saveSession();
    this.unsubscribeEnv = this.env.subscribe((e) => this.onEnvironment(e));
    void this.loadOutbox();
    if (options.autoConnect !== false) this.connect();
    else this.after();
  }

  // ---- the application's commands ----------------------------------------

  /** Starts connecting (or, while waiting to retry, tries at once). */
  connect(opts: { resetBackoff?: boolean } = {}): void {
    if (opts.resetBackoff) this.backoff.reset();
    if (!this.want) {
      this.want = true;
      this.inError = false;
      this.stop = 'none';
      this.connectedOnce = false;
      this.escalated = false;
    }
    this.suspended = false;
    this.kick();
    this.after();
  }

  /** Attempts now unless an attempt is in flight; also leaves a fatal or error stop. */
  retryNow(): void {
    this.want = true;
    this.inError = false;
    this.stop = 'none';
    this.suspended = false;
    this.kick();
    this.after();
  }

  /** Closes with 1000 and stops reconnecting until connect()/retryNow(). */
  close(): void {
    this.halt('manual', false);
    this.failWaiters(new TetherError('closed', 'the client was closed'));
    this.after();
  }

  /** Stops for good: close(), and no more page or network events. */
  dispose(): void {
    this.close();
    this.unsubscribeEnv();
    this.clock.clearTimeout(this.timer);
    this.timerAt = Infinity;
  }

  /** Resolves on the next transition to `connected` (at once when connected). */
  waitConnected(opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
    if (this.status.state === 'connected') return Promise.resolve();
    return new Promise((resolve, reject) => {
      let t: unknown;
      const w = {
        resolve: () => {
          done();
          resolve();
        },
        reject: (e: TetherError) => {
          done();
          reject(e);
        },
      };
      const onAbort = () => w.reject(new TetherError('aborted', 'waitConnected aborted'));
      const done = () => {
        this.waiters.delete(w);
        if (t !== undefined) this.clock.clearTimeout(t);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener('abort', onAbort);
      if (opts.timeoutMs !== undefined)
        t = this.clock.setTimeout(() => w.reject(new TetherError('timeout', 'not connected in time')), opts.timeoutMs);
      this.waiters.add(w);
    });
  }

  /** Tracks a room; joins now or once connected. Throws TetherError invalid_room / too_many_rooms / already_joined. */
  join(name: string, opts: JoinOptions = {}): Room {
    if (typeof name !== 'string' || name.length === 0 || utf8(name) > ROOM_MAX)
      throw new TetherError('invalid_room', `a room name has 1 to ${ROOM_MAX} bytes`);
    if (this.rooms.has(name)) throw new TetherError('already_joined', `already in room ${name}`);
    if (this.rooms.size >= (this.o.maxRooms ?? 1000)) throw new TetherError('too_many_rooms', 'too many rooms');
    const r: RoomEntry = {
      name,
      room: new Room(this, name),
      opts,
      position: opts.since ? { ...opts.since } : this.positions.get(name),
      join: 'idle',
      attempts: 0,
      errors: 0,
      deadline: 0,
      target: 0,
      everJoined: false,
    };
    this.rooms.set(name, r);
    const a = this.attempt;
    if (a && (a.stage === 'sync' || a.stage === 'up')) this.sendJoin(a, r);
    this.after();
    return r.room;
  }

  /** Stops tracking a room (LEAVE when connected). */
  leave(name: string): boolean {
    const r = this.rooms.get(name);
    if (!r) return false;
    this.rooms.delete(name);
    const a = this.attempt;
    if (a && (a.stage === 'sync' || a.stage === 'up')) this.send(a, encode('LEAVE', { room: name }));
    this.reportRoom(r, 'disconnected', { reason: 'left' });
    this.maybeEstablished();
    this.after();
    return true;
  }

  /** Queues `data` (one JSON value) for `room`; resolves with the ack. */
  publish(room: string, data: unknown): Promise<Ack> {
    if (typeof room !== 'string' || room.length === 0 || utf8(room) > ROOM_MAX)
      return Promise.reject(new TetherError('invalid_room', `a room name has 1 to ${ROOM_MAX} bytes`));
    let text: string | undefined;
    try {
      text = JSON.stringify(data);
    } catch {
      text = undefined;
    }
    if (text === undefined) return Promise.reject(new TetherError('invalid_data', 'data must be a JSON value'));
    const bytes = utf8(text);
    if (bytes + utf8(room) + 200 > FRAME_MAX) return Promise.reject(new TetherError('too_large', 'message above 1 MiB'));
    const maxCount = this.o.outbox?.maxCount ?? 1000;
    const maxBytes = this.o.outbox?.maxBytes ?? 4 << 20;
    if (bytes > maxBytes) return Promise.reject(new TetherError('too_large', 'message above the outbox byte bound'));
    while (this.outbox.length >= maxCount || this.outboxBytes + bytes > maxBytes) {
      if (this.o.outbox?.overflow !== 'dropOldest')
        return Promise.reject(new TetherError('outbox_full', `outbox full (${this.outbox.length} messages)`));
      this.fail(0, new TetherError('dropped', 'dropped from a full outbox', this.outbox[0].everSent));
    }
    return new Promise<Ack>((resolve, reject) => {
      const e: Entry = {
        id: `${this.idPrefix}-${this.nextId++}`,
        room,
        data: text!,
        bytes,
        sentOn: 0,
        everSent: false,
        resolve,
        reject,
      };
      this.outbox.push(e);
      this.outboxBytes += bytes;
      this.store?.put(e);
      this.flush();
      this.after();
    });
  }

  /** Subscribes to client events; returns the unsubscribe function. 'state' and 'status' are called at once. */
  on<K extends keyof Handlers>(event: K, fn: Handlers[K]): () => void {
    this.handlers[event].add(fn);
    const s = this.status;
    if (event === 'state') (fn as Handlers['state'])(s.state, s);
    if (event === 'status') (fn as Handlers['status'])(s);
    return () => this.handlers[event].delete(fn);
  }

  get state(): ClientState {
    return this.status.state;
  }

  get status(): ClientStatus {
    return this.derive();
  }

  /** One line for humans: "reconnecting (attempt 3, next in 2.1 s)". */
  describe(): string {
    const s = this.status;
    const parts: string[] = [];
    if (s.state === 'connected' && s.phase === 'sending') parts.push(`sending ${s.sendingDone} of ${s.sendingTotal}`);
    else if (s.phase !== 'none' && s.state !== 'connected') parts.push(s.phase.replace('_', ' '));
    if (s.attempt > 0 && s.state !== 'connected') parts.push(`attempt ${s.attempt}`);
    if (s.nextRetryAt !== undefined)
      parts.push(`next in ${(Math.max(0, s.nextRetryAt - this.clock.now()) / 1000).toFixed(1)} s`);
    if (s.queued > 0 && s.phase !== 'sending') parts.push(`${s.queued} queued`);
    let text = s.state;
    if (s.state === 'disconnected' || s.state === 'error') {
      text += `: ${s.reason.replace('_', ' ')}`;
      if (s.closeCode) text += ` (close ${s.closeCode}${s.closeReason ? ' ' + s.closeReason : ''})`;
    }
    return parts.length ? `${text} (${parts.join(', ')})` : text;
  }

  /** Resolves once the outbox's durable copy holds every message queued so far. */
  async flushStorage(): Promise<void> {
    await this.outboxReady;
    await this.store?.flush();
  }

  /** @internal */
  roomState(name: string): RoomState {
    const r = this.rooms.get(name);
    return r ? this.deriveRoom(r) : 'disconnected';
  }
  /** @internal */
  roomPosition(name: string): Position | undefined {
    const p = this.rooms.get(name)?.position;
    return p && { ...p };
  }

  // ---- the lifecycle ------------------------------------------------------

  /** Starts an attempt unless one is alive, or we may not. */
  private kick() {
    if (!this.want || this.suspended || this.attempt) return;
    if (!this.online) return this.armProbe(); // the probe timer attempts anyway
    this.deadlines.delete('retry');
    this.startAttempt();
  }

  private startAttempt() {
    const a: Attempt = {
      id: ++this.attemptSeq,
      stage: 'credentials',
      resuming: false,
      resumed: new Set(),
      interval: 0,
      timeout: 0,
      nextBeat: 0,
      lastRx: 0,
    };
    this.attempt = a;
    this.metrics.attempts++;
    this.deadlines.delete('retry');
    const creds = this.o.credentials;
    if (!creds) {
      a.token = this.o.token;
      this.open(a);
      return;
    }
    const refresh = this.needRefresh;
    this.needRefresh = false;
    this.deadlines.set('stage', this.clock.now() + (this.o.credentialsTimeoutMs ?? 10_000));
    Promise.resolve()
      .then(() => creds(refresh))
      .then(
        (token) => {
          if (this.attempt !== a || a.stage !== 'credentials') return;
          if (typeof token !== 'string' || !token) throw new Error('the credentials function gave no token');
          a.token = token;
          this.open(a);
          this.after();
        },
        (err: unknown) => {
          if (this.attempt !== a || a.stage !== 'credentials') return;
          this.emitError(new TetherError('credentials_failed', `credentials: ${(err as Error)?.message ?? err}`));
          this.lost(a, 0, 'credentials failed', false);
          this.after();
        },
      );
  }

  private open(a: Attempt) {
    a.stage = 'opening';
    this.deadlines.set('stage', this.clock.now() + (this.o.openTimeoutMs ?? 10_000));
    let ws: WebSocketLike;
    try {
      ws = new this.WS(this.o.url, SUBPROTOCOL);
    } catch (e) {
      this.lost(a, 1006, `cannot open: ${(e as Error).message}`, true);
      return;
    }
    a.ws = ws;
    ws.onopen = () => this.input(a, () => this.onOpen(a));
    ws.onmessage = (ev) => this.input(a, () => this.onFrame(a, ev.data));
    ws.onclose = (ev) => this.input(a, () => this.lost(a, ev.code || 1006, ev.reason || 'connection lost', true));
    ws.onerror = () => {};
  }

  /** Runs `fn` for an event of attempt `a`'s socket, unless `a` was abandoned. */
  private input(a: Attempt, fn: () => void) {
    if (this.attempt !== a) return;
    fn();
    this.after();
  }

  private onOpen(a: Attempt) {
    if (a.stage !== 'opening') return;
    if (a.ws!.protocol !== SUBPROTOCOL) {
      this.lost(a, 4012, 'invalid version: the server did not select tether.v1', true);
      return;
    }
    a.stage = 'hello';
    a.lastRx = this.clock.now();
    this.deadlines.set('stage', this.clock.now() + (this.o.authTimeoutMs ?? 10_000));
  }

  /** The attempt is over: `fromPeer` when the server or the link ended it. */
  private lost(a: Attempt, code: number, reason: string, fromPeer: boolean, retryAfter?: number) {
    if (this.attempt !== a) return;
    const wasUp = a.stage === 'up';
    if (a.ws) {
      const ws = a.ws;
      ws.onopen = ws.onmessage = ws.onclose = null;
      // `ws` emits an error for a socket closed while connecting: keep a listener.
      ws.onerror = () => {};
      if (!fromPeer) safeClose(ws, code, reason);
    }
    this.attempt = undefined;
    for (const t of ['stage', 'heartbeat', 'liveness', 'verdict', 'join', 'stable'] as const) this.deadlines.delete(t);
    for (const r of this.rooms.values()) if (r.join !== 'retry') r.join = 'idle';
    for (const e of this.outbox) e.sentOn = 0;
    this.sendingDone = this.sendingTotal = 0;
    if (code) {
      this.closeCode = code;
      this.closeReason = reason;
    }
    if (wasUp) this.connectedOnce = true;
    this.saveSession();
    if (!this.want || this.suspended) return;
    if (!this.online) {
      this.armProbe();
      return;
    }
    if (fromPeer && (code === 4003 || code === 4004)) {
      if (this.o.credentials && !this.escalated) {
        this.escalated = true;
        this.needRefresh = true;
        this.startAttempt();
      } else this.halt('auth_failed', true);
      return;
    }
    const fatalReason = this.o.fatalReasons?.some((s) => s && reason.includes(s));
    if (fromPeer && (this.fatalCodes.includes(code) || fatalReason)) {
      this.halt('fatal', false);
      return;
    }
    const delay = this.backoff.next(retryAfter ?? this.retryAfter);
    this.retryAfter = undefined;
    if (delay === undefined) {
      this.halt('max_attempts', false);
      return;
    }
    this.deadlines.set('retry', this.clock.now() + delay);
  }

  /** Stops wanting to be connected (until connect()/retryNow()). */
  private halt(reason: StopReason, error: boolean) {
    this.want = false;
    this.inError = error;
    this.stop = reason;
    this.deadlines.delete('retry');
    this.deadlines.delete('probe');
    if (this.attempt) this.lost(this.attempt, 1000, reason === 'manual' ? 'closed by the application' : reason, false);
    if (reason !== 'manual') this.failWaiters(new TetherError(reason, `stopped: ${reason}`));
  }

  private armProbe() {
    if (!this.deadlines.has('probe')) this.deadlines.set('probe', this.clock.now() + (this.o.offlineProbeMs ?? 30_000));
  }

  private onEnvironment(e: EnvironmentEvent) {
    const a = this.attempt;
    switch (e.type) {
      case 'offline':
        this.online = false;
        if (a) this.lost(a, 1000, 'offline', false);
        this.deadlines.delete('retry');
        if (this.want) this.armProbe();
        break;
      case 'online':
        if (!this.online) {
          this.online = true;
          this.deadlines.delete('probe');
          this.backoff.reset();
          this.kick();
        } else if (!a && this.deadlines.has('retry')) {
          this.kick();
        } else if (a?.stage === 'up') this.probe(a);
        break;
      case 'visible':
        if (a?.stage === 'up') this.probe(a);
        break;
      case 'pagehide':
        this.saveSession(false);
        this.backupOutbox();
        if (a) this.lost(a, 1000, 'page hidden', false);
        this.suspended = true;
        this.deadlines.delete('retry');
        break;
      case 'pageshow':
        if (e.persisted && this.suspended) {
          this.dropOutboxBackup();
          this.saved.live = true;
          this.saveSession();
          this.suspended = false;
          this.backoff.reset();
          this.kick();
        }
        break;
    }
    this.service();
  }

  /** A liveness probe now (page visible again, network back), unless one is out. */
  private probe(a: Attempt) {
    if (a.beatTs === undefined) this.beat(a, this.clock.now());
  }

  // ---- timers -------------------------------------------------------------

  /** Serves every deadline due by the wall clock, then re-arms the one timer. */
  private service() {
    const now = this.clock.now();
    for (const [name, at] of [...this.deadlines]) {
      if (at <= now && this.deadlines.get(name) === at) {
        this.deadlines.delete(name);
        this.onTimer(name, now);
      }
    }
    this.after();
  }

  private onTimer(name: TimerName, now: number) {
    const a = this.attempt;
    switch (name) {
      case 'retry':
        this.kick();
        break;
      case 'probe':
        // Offline, as far as the browser says: try anyway, and believe the network if it works.
        if (this.want && !this.online && !this.attempt) {
          this.deadlines.set('probe', now + (this.o.offlineProbeMs ?? 30_000));
          this.startAttempt();
        }
        break;
      case 'stable':
        this.backoff.reset();
        break;
      case 'save':
        this.saveSession();
        break;
      case 'stage':
        if (a) this.lost(a, 4000, `${a.stage === 'sync' ? 'sync' : a.stage} timeout`, false);
        break;
      case 'heartbeat':
        if (a && a.interval > 0) {
          if (a.beatTs === undefined) this.beat(a, now);
          else this.deadlines.set('heartbeat', now + a.interval);
        }
        break;
      case 'liveness':
        // Due by the wall clock. A frame may be waiting in the event queue
        // (a throttled tab wakes up with both at once): decide in the next
        // task, after the frames already received are handled.
        if (a?.deadAt !== undefined) this.deadlines.set('verdict', now);
        break;
      case 'verdict':
        if (a?.deadAt !== undefined) {
          if (now >= a.deadAt) {
            this.metrics.heartbeatTimeouts++;
            this.lost(a, 4000, 'heartbeat timeout', false);
          } else this.deadlines.set('liveness', a.deadAt);
        }
        break;
      case 'join':
        if (a) this.serveJoins(a, now);
        break;
      case 'outbox':
        this.flush();
        break;
    }
  }

  private beat(a: Attempt, now: number) {
    a.beatTs = now;
    a.deadAt = now + a.timeout;
    a.nextBeat = now + a.interval;
    this.deadlines.set('liveness', a.deadAt);
    this.deadlines.set('heartbeat', a.nextBeat);
    this.send(a, encode('HEARTBEAT', { ts: now }));
  }

  /** Ends an input: status events, waiters, the one timer. */
  private after() {
    const s = this.derive();
    const prev = this.last;
    this.last = s;
    if (prev && s.state === 'connected' && prev.state !== 'connected') for (const w of [...this.waiters]) w.resolve();
    if (!prev || JSON.stringify(prev) !== JSON.stringify(s)) {
      for (const fn of this.handlers.status) this.safely(() => fn(s));
      if (!prev || prev.state !== s.state) for (const fn of this.handlers.state) this.safely(() => fn(s.state, s));
    }
    for (const r of this.rooms.values()) this.reportRoom(r, this.deriveRoom(r));
    let earliest = Infinity;
    for (const at of this.deadlines.values()) earliest = Math.min(earliest, at);
    if (earliest !== this.timerAt) {
      if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
      this.timer = undefined;
      this.timerAt = earliest;
      if (earliest !== Infinity)
        this.timer = this.clock.setTimeout(() => {
          this.timer = undefined;
          this.timerAt = Infinity;
          this.service();
        }, Math.max(0, earliest - this.clock.now()));
    }
  }

  private safely(fn: () => void) {
    try {
      fn();
    } catch (e) {
      if (this.handlers.error.size === 0) setTimeout(() => { throw e; }, 0);
      else for (const h of this.handlers.error) h(new TetherError('handler', `an event handler threw: ${(e as Error)?.message ?? e}`));
    }
  }

  private emitError(e: TetherError) {
    for (const h of this.handlers.error) this.safely(() => h(e));
  }

  private failWaiters(e: TetherError) {
    for (const w of [...this.waiters]) w.reject(e);
  }

  // ---- frames ------------------------------------------------------------

  private send(a: Attempt, text: string) {
    try {
      a.ws!.send(text);
    } catch {
      // The socket is closing: its close event follows.
    }
  }

  private onFrame(a: Attempt, data: unknown) {
    const now = this.clock.now();
    a.lastRx = now;
    if (a.deadAt !== undefined) a.deadAt = Math.max(a.deadAt, now + a.timeout);
    if (typeof data !== 'string') {
      this.lost(a, 4002, 'binary frames are not part of tether.v1', false);
      return;
    }
    const m = decode(data);
    if (m.op === null) {
      this.lost(a, m.code, m.reason, false);
      return;
    }
    this.onMessage(a, m, now);
    // A throttled timer may not have fired: beat when due by the wall clock.
    if (this.attempt === a && a.interval > 0 && a.beatTs === undefined && now >= a.nextBeat) this.beat(a, now);
  }

  private onMessage(a: Attempt, m: ServerMessage, now: number) {
    switch (m.op) {
      case 'HELLO': {
        if (a.stage !== 'hello') return;
        a.interval = this.o.pingIntervalMs ?? m.heartbeatMs;
        a.timeout = this.o.pingTimeoutMs ?? a.interval;
        a.nextBeat = now + Math.floor(this.random() * a.interval);
        this.deadlines.set('heartbeat', a.nextBeat);
        a.stage = 'auth';
        const s = this.session;
        if (s) {
          a.resuming = true;
          const rooms = [...this.rooms.values()]
            .filter((r) => r.position && r.join !== 'retry')
            .map((r) => (a.resumed.add(r.name), { room: r.name, epoch: r.position!.epoch, offset: r.position!.offset }));
          this.send(a, encode('RESUME', { session_id: s.id, resume_token: s.token, rooms }));
        } else this.identify(a);
        return;
      }
      case 'READY':
        if (a.stage !== 'auth') return;
        this.session = { id: m.sessionId, token: m.resumeToken, user: m.user };
        return this.authenticated(a, false, m.user);
      case 'RESUMED':
        if (a.stage !== 'auth' || !this.session) return;
        this.session.id = m.sessionId;
        this.session.token = m.resumeToken;
        return this.authenticated(a, true, this.session.user);
      case 'INVALID_SESSION':
        if (a.stage !== 'auth') return;
        if (m.resumable) return this.lost(a, 4000, 'session busy', false);
        this.session = undefined;
        a.resuming = false;
        this.saveSession();
        return this.identify(a);
      case 'HEARTBEAT_ACK':
        if (m.ts === a.beatTs) {
          a.beatTs = a.deadAt = undefined;
          this.deadlines.delete('liveness');
          this.deadlines.delete('verdict');
          for (const fn of this.handlers.latency) this.safely(() => fn(now - m.ts));
        }
        return;
      case 'JOINED':
        return this.onJoined(a, m);
      case 'JOIN_ERROR':
        return this.onJoinError(a, m, now);
      case 'EVENT':
        return this.onEvent(a, m);
      case 'ACK':
        return this.onAck(m);
      case 'NACK':
        return this.onNack(m, now);
      case 'RECONNECT':
        return this.lost(a, 1000, m.reason || 'the server asked to reconnect', false, m.retryAfterMs ?? undefined);
    }
  }

  private identify(a: Attempt) {
    const info = this.o.clientInfo ?? { name: 'tether-js', version: VERSION };
    this.send(a, encode('IDENTIFY', { token: a.token, client: info }));
  }

  private authenticated(a: Attempt, resumed: boolean, user: string) {
    this.escalated = false;
    a.stage = 'sync';
    this.deadlines.set('stage', this.clock.now() + (this.o.syncTimeoutMs ?? 30_000));
    this.saveSession();
    for (const fn of this.handlers.session) this.safely(() => fn({ sessionId: this.session!.id, user, resumed }));
    for (const r of this.rooms.values()) {
      if (resumed && a.resumed.has(r.name)) {
        // RESUME re-joins the rooms it listed, as a JOIN with since would.
        r.join = 'sent';
        r.attempts = 1;
        r.deadline = this.clock.now() + (this.o.joinTimeoutMs ?? 10_000);
      } else if (r.join !== 'retry') this.sendJoin(a, r);
    }
    this.armJoins();
    this.maybeEstablished();
  }

  private sendJoin(a: Attempt, r: RoomEntry) {
    r.join = 'sent';
    r.attempts++;
    r.deadline = this.clock.now() + (this.o.joinTimeoutMs ?? 10_000);
    const d: { room: string; since?: Position } = { room: r.name };
    if (r.position) d.since = { epoch: r.position.epoch, offset: r.position.offset };
    this.send(a, encode('JOIN', d));
    this.armJoins();
  }

  private armJoins() {
    let at = Infinity;
    for (const r of this.rooms.values()) if (r.join === 'sent' || r.join === 'retry') at = Math.min(at, r.deadline);
    if (at === Infinity) this.deadlines.delete('join');
    else this.deadlines.set('join', at);
  }

  private serveJoins(a: Attempt, now: number) {
    for (const r of this.rooms.values()) {
      if (r.deadline > now || (r.join !== 'sent' && r.join !== 'retry')) continue;
      if (r.join === 'sent' && r.attempts >= 3) {
        this.lost(a, 4000, 'join timeout', false);
        return;
      }
      if (a.stage === 'sync' || a.stage === 'up') this.sendJoin(a, r);
    }
    this.armJoins();
  }

  private onJoined(a: Attempt, m: Extract<ServerMessage, { op: 'JOINED' }>) {
    const r = this.rooms.get(m.room);
    if (!r || r.join !== 'sent') return;
    r.join = 'joined';
    r.attempts = r.errors = 0;
    r.everJoined = true;
    const p = r.position;
    if (p && (!m.recovered || p.epoch !== m.epoch)) {
      this.metrics.historyLost++;
      r.position = { epoch: m.epoch, offset: m.offset };
      const h = { room: r.name, lastDelivered: p, resumedAt: { ...r.position } };
      if (r.opts.onHistoryLost) this.safely(() => r.opts.onHistoryLost!(h));
    } else if (!p) r.position = { epoch: m.epoch, offset: m.offset };
    r.target = m.offset;
    this.positions.set(r.name, r.position!);
    this.armJoins();
    this.maybeEstablished();
    void a;
  }

  private onJoinError(a: Attempt, m: Extract<ServerMessage, { op: 'JOIN_ERROR' }>, now: number) {
    const r = this.rooms.get(m.room);
    if (!r || r.join !== 'sent') return;
    if (m.fatal) {
      this.rooms.delete(r.name);
      this.reportRoom(r, 'error', { code: m.code, reason: m.reason });
    } else {
      r.join = 'retry';
      r.attempts = 0;
      r.deadline = now + Math.min(1000 * 2 ** r.errors++, this.backoff.maxMs);
    }
    this.armJoins();
    this.maybeEstablished();
    void a;
  }

  private onEvent(a: Attempt, m: Extract<ServerMessage, { op: 'EVENT' }>) {
    const r = this.rooms.get(m.room);
    if (!r || r.join !== 'joined' || !r.position) return;
    const p = r.position;
    if (m.epoch === p.epoch && m.offset <= p.offset) {
      this.metrics.duplicates++;
      return;
    }
    if (m.epoch !== p.epoch || m.offset !== p.offset + 1) {
      // A gap: resume from the last position, never skip.
      this.lost(a, 4000, `gap in ${r.name.slice(0, 60)}`, false);
      return;
    }
    r.position = { epoch: m.epoch, offset: m.offset };
    this.positions.set(r.name, r.position);
    const replayed = m.offset <= r.target;
    this.metrics.delivered++;
    if (replayed) this.metrics.replayed++;
    const e: RoomEvent = { room: r.name, epoch: m.epoch, offset: m.offset, data: m.data, replayed };
    if (r.opts.onEvent) this.safely(() => r.opts.onEvent!(e));
    if (!this.deadlines.has('save')) this.deadlines.set('save', this.clock.now() + 1000);
    if (replayed) this.maybeEstablished();
  }

  private maybeEstablished() {
    const a = this.attempt;
    if (!a || a.stage !== 'sync') return;
    for (const r of this.rooms.values())
      if (r.join === 'sent' || r.join === 'idle' || (r.join === 'joined' && r.position!.offset < r.target)) return;
    a.stage = 'up';
    this.deadlines.delete('stage');
    this.deadlines.set('stable', this.clock.now() + this.backoff.stablePeriodMs);
    this.metrics.connects++;
    if (this.connectedOnce) this.metrics.reconnects++;
    this.connectedOnce = true;
    if (!this.online) {
      // The offline probe got through: the network works.
      this.online = true;
      this.deadlines.delete('probe');
    }
    this.sendingDone = 0;
    this.sendingTotal = this.outbox.length;
    this.flush();
  }

  // ---- the outbox ---------------------------------------------------------

  private outboxReady?: Promise<void>;

  private async loadOutbox() {
    let resolve!: () => void;
    this.outboxReady = new Promise((r) => (resolve = r));
    try {
      const store = await openOutbox(this.o.outbox?.storage ?? 'auto', this.outboxKey);
      const restored = await store.load();
      const ls = store.kind === 'indexeddb' ? webStorage('localStorage') : undefined;
      const backupKey = `tether-outbox-backup:${this.outboxKey}`;
      if (ls?.getItem(backupKey) != null) {
        // Written synchronously at pagehide: the whole outbox at the moment
        // the page went away. IndexedDB may not have committed the last puts
        // (the page unloaded first) nor the last removals (acknowledged
        // messages): the backup wins both ways.
        const backup = readList(ls, backupKey);
        const keep = new Set(backup.map((m) => m.id));
        const have = new Set(restored.map((m) => m.id));
        for (const m of restored) if (!keep.has(m.id)) store.remove(m.id);
        for (const m of backup) if (!have.has(m.id)) store.put(m);
        restored.splice(0, restored.length, ...backup);
        ls.removeItem(backupKey);
      }
      const queued = new Set(this.outbox.map((e) => e.id));
      const entries: Entry[] = restored
        .filter((m) => !queued.has(m.id))
        .map((m) => ({ ...m, bytes: utf8(m.data), sentOn: 0, everSent: true }));
      this.outbox = [...entries, ...this.outbox];
      for (const e of entries) this.outboxBytes += e.bytes;
      for (const e of this.outbox) if (!entries.includes(e)) store.put(e);
      this.store = store;
    } finally {
      resolve();
    }
    this.flush();
    this.after();
  }

  /** This tab's outbox in storage (and its pagehide list, with a prefix). */
  private get outboxKey() {
    return `${this.key}:${this.saved.tab}`;
  }

  /**
   * At pagehide, the outbox as it is (an empty list included) into
   * localStorage, synchronously; `dropOutboxBackup` (pageshow from the
   * back/forward cache) removes it again, since the page lives on and
   * IndexedDB is the truth once more.
   */
  private backupOutbox() {
    const ls = this.store?.kind === 'indexeddb' ? webStorage('localStorage') : undefined;
    const key = `tether-outbox-backup:${this.outboxKey}`;
    try {
      ls?.setItem(key, JSON.stringify(this.outbox.map(({ id, room, data }) => ({ id, room, data }))));
    } catch {
      ls?.removeItem(key); // quota: IndexedDB still has what it committed
    }
  }

  private dropOutboxBackup() {
    if (this.store?.kind === 'indexeddb') webStorage('localStorage')?.removeItem(`tether-outbox-backup:${this.outboxKey}`);
  }

  private flush() {
    const a = this.attempt;
    if (!a || a.stage !== 'up' || !this.store) return;
    const now = this.clock.now();
    const max = this.o.outbox?.inflightMax ?? 64;
    let inflight = 0;
    for (const e of this.outbox) if (e.sentOn === a.id) inflight++;
    for (const e of this.outbox) {
      if (e.sentOn === a.id) continue;
      if (e.notBefore !== undefined && e.notBefore > now) {
        // Held by a retryable NACK: the messages behind it wait (order).
        this.deadlines.set('outbox', e.notBefore);
        return;
      }
      if (inflight >= max) return;
      e.notBefore = undefined;
      e.sentOn = a.id;
      e.everSent = true;
      inflight++;
      this.metrics.sent++;
      this.send(a, `{"op":"PUBLISH","d":{"room":${JSON.stringify(e.room)},"id":${JSON.stringify(e.id)},"data":${e.data}}}`);
    }
  }

  private remove(i: number): Entry {
    const [e] = this.outbox.splice(i, 1);
    this.outboxBytes -= e.bytes;
    this.store?.remove(e.id);
    if (this.sendingTotal > 0) this.sendingDone = Math.min(this.sendingDone + 1, this.sendingTotal);
    return e;
  }

  private fail(i: number, err: TetherError) {
    const e = this.remove(i);
    this.metrics.failed++;
    if (e.reject) e.reject(err);
    for (const fn of this.handlers.outbox) this.safely(() => fn({ type: 'failed', id: e.id, room: e.room, error: err }));
  }

  private onAck(m: Extract<ServerMessage, { op: 'ACK' }>) {
    const i = this.outbox.findIndex((e) => e.id === m.id);
    if (i < 0) return;
    const e = this.remove(i);
    this.metrics.acked++;
    const ack: Ack = { id: m.id, room: m.room, epoch: m.epoch, offset: m.offset };
    if (e.resolve) e.resolve(ack);
    for (const fn of this.handlers.outbox) this.safely(() => fn({ type: 'acked', ...ack }));
    if (this.sendingDone >= this.sendingTotal) this.sendingDone = this.sendingTotal = 0;
    this.flush();
  }

  private onNack(m: Extract<ServerMessage, { op: 'NACK' }>, now: number) {
    const i = this.outbox.findIndex((e) => e.id === m.id);
    if (i < 0) return;
    if (RETRY_NACKS.includes(m.code)) {
      const e = this.outbox[i];
      e.sentOn = 0;
      e.notBefore = now + Math.min(m.retryAfterMs ?? 1000, RETRY_AFTER_MAX_MS);
      this.flush();
      return;
    }
    const code = FINAL_NACKS.includes(m.code) ? m.code : `server_${m.code}`;
    this.fail(i, new TetherError(code, m.reason || m.code, true));
    this.flush();
  }

  // ---- status ------------------------------------------------------------

  private derive(): ClientStatus {
    const a = this.attempt;
    let state: ClientState;
    let phase: Phase = 'none';
    if (!this.want) state = this.inError ? 'error' : 'disconnected';
    else if (!this.online && !a) state = 'disconnected';
    else if (a?.stage === 'up') state = 'connected';
    else state = this.connectedOnce ? 'reconnecting' : 'connecting';
    if (a) {
      const stagePhase: Record<Stage, Phase> = {
        credentials: 'credentials',
        opening: 'opening',
        hello: 'authenticating',
        auth: a.resuming ? 'resuming' : 'authenticating',
        sync: [...this.rooms.values()].some((r) => r.join !== 'joined') ? 'joining' : 'catching_up',
        up: this.sendingTotal > 0 ? 'sending' : 'none',
      };
      phase = stagePhase[a.stage];
    }
    const retry = this.deadlines.get('retry');
    return {
      state,
      phase,
      reason: !this.want ? this.stop : !this.online && !a ? 'offline' : this.suspended ? 'suspended' : 'none',
      attempt: a?.stage === 'up' ? 0 : this.backoff.attempt + (a ? 1 : 0),
      nextRetryAt: retry,
      closeCode: this.closeCode,
      closeReason: this.closeReason,
      offline: !this.online,
      queued: this.outbox.length,
      sendingDone: this.sendingDone,
      sendingTotal: this.sendingTotal,
      outboxStorage: this.store?.kind,
    };
  }

  private deriveRoom(r: RoomEntry): RoomState {
    const a = this.attempt;
    if (r.join === 'joined' && a?.stage === 'up' || (r.join === 'joined' && a?.stage === 'sync' && r.position!.offset >= r.target))
      return 'joined';
    if (!this.want) return 'disconnected';
    return r.everJoined ? 'reconnecting' : 'connecting';
  }

  private reportRoom(r: RoomEntry, state: RoomState, extra: { code?: string; reason?: string } = {}) {
    if (r.reported === state) return;
    r.reported = state;
    if (r.opts.onStatus) this.safely(() => r.opts.onStatus!({ state, ...extra }));
  }

  // ---- the session across reloads ----------------------------------------

  private loadSession(): SavedSession {
    const fresh: SavedSession = { v: 1, tab: randomHex(this.random), live: true, rooms: {} };
    if (!this.ss) return fresh;
    let s: SavedSession | undefined;
    try {
      s = JSON.parse(this.ss.getItem(`tether-session:${this.key}`) ?? 'null') as SavedSession;
    } catch {
      s = undefined;
    }
    if (!s || s.v !== 1 || typeof s.tab !== 'string') return fresh;
    for (const [room, p] of Object.entries(s.rooms ?? {}))
      if (Array.isArray(p) && Number.isSafeInteger(p[0]) && Number.isSafeInteger(p[1]))
        this.positions.set(room, { epoch: p[0], offset: p[1] });
    if (s.live) {
      // Still owned by a live page: this tab is a duplicate that copied the
      // first one's sessionStorage. It must not take over that session or
      // its outbox; the positions are harmless (a new session replays from them).
      fresh.rooms = s.rooms ?? {};
      return fresh;
    }
    if (s.sessionId && s.resumeToken && s.user)
      this.session = { id: s.sessionId, token: s.resumeToken, user: s.user };
    s.live = true;
    return s;
  }

  private saveSession(live = this.saved.live) {
    this.deadlines.delete('save');
    const s = this.saved;
    s.live = live;
    s.sessionId = this.session?.id;
    s.resumeToken = this.session?.token;
    s.user = this.session?.user;
    s.rooms = {};
    for (const [room, p] of this.positions) s.rooms[room] = [p.epoch, p.offset];
    try {
      this.ss?.setItem(`tether-session:${this.key}`, JSON.stringify(s));
    } catch {
      // quota: the session is kept in memory
    }
  }
}
