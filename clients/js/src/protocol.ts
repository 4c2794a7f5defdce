// The tether protocol v1 as the client speaks it (docs/PROTOCOL.md): the
// frames the server sends, decoded and checked, and the encoder of the
// frames the client sends. Decoding never throws: a frame that breaks the
// protocol yields a DecodeError, and the client closes with the code the
// protocol names for it (4001 unknown op, 4002 decode error).

/** A position in a room's stream: the last offset delivered in an epoch. */
export interface Position {
  epoch: number;
  offset: number;
}

export type ServerMessage =
  | { op: 'HELLO'; heartbeatMs: number; sessionTtlMs: number }
  | { op: 'READY'; sessionId: string; resumeToken: string; user: string }
  | { op: 'RESUMED'; sessionId: string; resumeToken: string }
  | { op: 'INVALID_SESSION'; resumable: boolean }
  | { op: 'HEARTBEAT_ACK'; ts: number }
  | { op: 'JOINED'; room: string; epoch: number; offset: number; recovered: boolean }
  | { op: 'JOIN_ERROR'; room: string; code: string; reason: string; fatal: boolean }
  | { op: 'ACK'; id: string; room: string; epoch: number; offset: number }
  | { op: 'NACK'; id: string; code: string; reason: string; retryAfterMs?: number }
  | { op: 'EVENT'; room: string; epoch: number; offset: number; data: unknown }
  | { op: 'RECONNECT'; reason: string; retryAfterMs?: number };

export interface DecodeError {
  op: null;
  code: 4001 | 4002 | 1009;
  reason: string;
}

/** Largest frame accepted, as the server's codec (1 MiB). */
export const FRAME_MAX = 1 << 20;

class Bad extends Error {}

type Obj = Record<string, unknown>;

function str(d: Obj, k: string, optional = false): string {
  const v = d[k];
  if (v === undefined && optional) return '';
  if (typeof v !== 'string') throw new Bad(`wrong_type at d.${k}: expected a string`);
  return v;
}
// Offsets, epochs and durations: non-negative integers a double holds
// exactly (the gateway's epochs and offsets stay below 2^53).
function num(d: Obj, k: string, optional = false): number {
  const v = d[k];
  if (v === undefined && optional) return -1;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw new Bad(`wrong_type at d.${k}: expected a non-negative integer`);
  return v;
}
function bool(d: Obj, k: string): boolean {
  const v = d[k];
  if (typeof v !== 'boolean') throw new Bad(`wrong_type at d.${k}: expected a boolean`);
  return v;
}
function opt(n: number): number | undefined {
  return n < 0 ? undefined : n;
}

/** Decodes one text frame of the server. */
export function decode(text: string): ServerMessage | DecodeError {
  if (text.length > FRAME_MAX) return { op: null, code: 1009, reason: 'message too big' };
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    return { op: null, code: 4002, reason: 'decode error: invalid_json' };
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m))
    return { op: null, code: 4002, reason: 'decode error: not_an_object' };
  const { op } = m as Obj;
  if (typeof op !== 'string') return { op: null, code: 4002, reason: 'decode error: missing op' };
  const raw = (m as Obj).d;
  if (raw !== undefined && raw !== null && (typeof raw !== 'object' || Array.isArray(raw)))
    return { op: null, code: 4002, reason: 'decode error: wrong_type at d' };
  const d = (raw ?? {}) as Obj;
  try {
    switch (op) {
      case 'HELLO': {
        const heartbeatMs = num(d, 'heartbeat_ms');
        if (heartbeatMs === 0) throw new Bad('out_of_range at d.heartbeat_ms');
        return { op, heartbeatMs, sessionTtlMs: num(d, 'session_ttl_ms') };
      }
      case 'READY':
        return { op, sessionId: str(d, 'session_id'), resumeToken: str(d, 'resume_token'), user: str(d, 'user') };
      case 'RESUMED':
        return { op, sessionId: str(d, 'session_id'), resumeToken: str(d, 'resume_token') };
      case 'INVALID_SESSION':
        return { op, resumable: bool(d, 'resumable') };
      case 'HEARTBEAT_ACK':
        return { op, ts: num(d, 'ts') };
      case 'JOINED':
        return { op, room: str(d, 'room'), epoch: num(d, 'epoch'), offset: num(d, 'offset'), recovered: bool(d, 'recovered') };
      case 'JOIN_ERROR':
        return { op, room: str(d, 'room'), code: str(d, 'code'), reason: str(d, 'reason', true), fatal: bool(d, 'fatal') };
      case 'ACK':
        return { op, id: str(d, 'id'), room: str(d, 'room'), epoch: num(d, 'epoch'), offset: num(d, 'offset') };
      case 'NACK':
        return { op, id: str(d, 'id'), code: str(d, 'code'), reason: str(d, 'reason', true), retryAfterMs: opt(num(d, 'retry_after_ms', true)) };
      case 'EVENT': {
        const offset = num(d, 'offset');
        if (offset === 0) throw new Bad('out_of_range at d.offset');
        if (!('data' in d)) throw new Bad('missing at d.data');
        return { op, room: str(d, 'room'), epoch: num(d, 'epoch'), offset, data: d.data };
      }
      case 'RECONNECT':
        return { op, reason: str(d, 'reason', true), retryAfterMs: opt(num(d, 'retry_after_ms', true)) };
      default:
        return { op: null, code: 4001, reason: `unknown op ${op.slice(0, 64)}` };
    }
  } catch (e) {
    return { op: null, code: 4002, reason: `decode error: ${(e as Error).message}` };
  }
}

/** One client frame: `{"op": ..., "d": ...}`. */
export function encode(op: string, d: object): string {
  return JSON.stringify({ op, d });
}
