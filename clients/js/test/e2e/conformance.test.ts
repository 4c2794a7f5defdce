// Conformance: the same protocol scenario, played by a scripted server (Node
// `ws`), against the C++ client (`tether connect --json`) and the SDK. Both
// must send the same frames and close codes and show the application the
// same things: events once and in order despite a duplicate, a gap resumed
// from the position (never skipped), a lost session re-identified with the
// positions, history lost reported, and a fatal close that stops retrying.
import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { TetherClient, type WebSocketConstructor } from '../../src/index.js';
import { TETHER } from './servers.js';

interface Seen {
  /** Per connection, what the client sent (HEARTBEATs left out: their first one is jittered). */
  sent: unknown[][];
  /** The close code and reason of the connection the client closed (the gap). */
  closes: Array<[number, string]>;
}
interface App {
  messages: Array<[number, number, unknown]>;
  historyLost: Array<[string, number, number]>;
  stopped: string;
}

const send = (ws: WebSocket, op: string, d: object) => ws.send(JSON.stringify({ op, d }));
const ev = (ws: WebSocket, epoch: number, offset: number) =>
  send(ws, 'EVENT', { room: 'r', epoch, offset, data: { n: offset } });

/** Plays the scenario; resolves with what the server saw once the client got the fatal close. */
function scriptedServer(): Promise<{ port: number; seen: Promise<Seen> }> {
  const seen: Seen = { sent: [], closes: [] };
  return new Promise((resolveStart) => {
    const wss = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      handleProtocols: (protocols) => (protocols.has('tether.v1') ? 'tether.v1' : false),
    });
    let done!: (s: Seen) => void;
    const finished = new Promise<Seen>((r) => (done = r));
    wss.on('connection', (ws) => {
      const n = seen.sent.length;
      const log: unknown[] = [];
      seen.sent.push(log);
      ws.on('close', (code, reason) => {
        if (n === 0) seen.closes.push([code, reason.toString()]); // the client closed it (the gap)
        if (n === 2) {
          wss.close();
          done(seen);
        }
      });
      send(ws, 'HELLO', { heartbeat_ms: 30000, session_ttl_ms: 60000 });
      ws.on('message', (raw) => {
        const m = JSON.parse(raw.toString());
        if (m.op === 'HEARTBEAT') return send(ws, 'HEARTBEAT_ACK', { ts: m.d.ts });
        const d = { ...m.d };
        delete d.token;
        delete d.client;
        delete d.resume_token;
        log.push({ op: m.op, ...d });
        if (n === 0) {
          if (m.op === 'IDENTIFY') send(ws, 'READY', { session_id: 'S', resume_token: 'T1', user: 'u' });
          if (m.op === 'JOIN') {
            send(ws, 'JOINED', { room: 'r', epoch: 9, offset: 0, recovered: true });
            for (const o of [1, 2, 2, 3, 5]) ev(ws, 9, o); // a duplicate, then a gap
          }
        } else if (n === 1) {
          if (m.op === 'RESUME') {
            send(ws, 'RESUMED', { session_id: 'S', resume_token: 'T2' });
            send(ws, 'JOINED', { room: 'r', epoch: 9, offset: 5, recovered: true });
            for (const o of [4, 5, 6]) ev(ws, 9, o);
            // The server restarts: the session and the room's history are gone.
            ws.close(1012, 'service restart');
          }
        } else {
          if (m.op === 'RESUME') send(ws, 'INVALID_SESSION', { resumable: false });
          if (m.op === 'IDENTIFY') send(ws, 'READY', { session_id: 'S2', resume_token: 'T3', user: 'u' });
          if (m.op === 'JOIN') {
            send(ws, 'JOINED', { room: 'r', epoch: 10, offset: 2, recovered: false });
            ev(ws, 10, 3);
            ws.close(4013, 'not permitted');
          }
        }
      });
    });
    wss.on('listening', () => resolveStart({ port: (wss.address() as AddressInfo).port, seen: finished }));
  });
}

async function cppClient(url: string): Promise<App> {
  const app: App = { messages: [], historyLost: [], stopped: '' };
  const proc = spawn(TETHER, ['connect', url, '--room', 'r', '--token', 'tok', '--json', '--no-network-monitor'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    const o = JSON.parse(line);
    if (o.type === 'message') app.messages.push([o.epoch, o.offset, o.data]);
    if (o.type === 'history_lost') app.historyLost.push([o.room, o.last_offset, o.resumed_offset]);
  });
  const code = await new Promise<number | null>((r) => proc.on('exit', r));
  app.stopped = code === 3 ? 'fatal' : `exit ${code}`;
  return app;
}

async function sdkClient(url: string): Promise<App> {
  const app: App = { messages: [], historyLost: [], stopped: '' };
  const c = new TetherClient({ url, token: 'tok', WebSocket: WebSocket as unknown as WebSocketConstructor });
  c.join('r', {
    onEvent: (e) => app.messages.push([e.epoch, e.offset, e.data]),
    onHistoryLost: (h) => app.historyLost.push([h.room, h.lastDelivered.offset, h.resumedAt.offset]),
  });
  app.stopped = await new Promise<string>((r) =>
    c.on('status', (s) => (s.state === 'disconnected' || s.state === 'error') && r(s.reason)),
  );
  c.dispose();
  return app;
}

describe('conformance: the C++ client and the SDK against one scripted server', () => {
  it('send the same frames and show the application the same things', async () => {
    const runs: Array<{ seen: Seen; app: App }> = [];
    for (const run of [cppClient, sdkClient]) {
      const srv = await scriptedServer();
      const [app, seen] = await Promise.all([run(`ws://127.0.0.1:${srv.port}/`), srv.seen]);
      runs.push({ seen, app });
    }
    const [cpp, sdk] = runs;
    // What the scenario requires, checked on the C++ client first ...
    expect(cpp.app.messages.map((m) => m[1])).toEqual([1, 2, 3, 4, 5, 6, 3]);
    expect(cpp.app.historyLost).toEqual([['r', 6, 2]]);
    expect(cpp.app.stopped).toBe('fatal');
    expect(cpp.seen.sent).toEqual([
      [{ op: 'IDENTIFY' }, { op: 'JOIN', room: 'r' }],
      [{ op: 'RESUME', session_id: 'S', rooms: [{ room: 'r', epoch: 9, offset: 3 }] }],
      [
        { op: 'RESUME', session_id: 'S', rooms: [{ room: 'r', epoch: 9, offset: 6 }] },
        { op: 'IDENTIFY' },
        { op: 'JOIN', room: 'r', since: { epoch: 9, offset: 6 } },
      ],
    ]);
    expect(cpp.seen.closes[0][0]).toBe(4000);
    // ... and the SDK does exactly the same.
    expect(sdk.app).toEqual(cpp.app);
    expect(sdk.seen.sent).toEqual(cpp.seen.sent);
    expect(sdk.seen.closes.map((c) => c[0])).toEqual(cpp.seen.closes.map((c) => c[0]));
  });
});
