// @tether/client: the browser and Node.js client of the tether gateway.
// docs/JS_CLIENT.md is its guide; docs/PROTOCOL.md the wire protocol.
export {
  TetherClient,
  Room,
  TetherError,
  VERSION,
  type Ack,
  type ClientOptions,
  type ClientState,
  type ClientStatus,
  type HistoryLost,
  type JoinOptions,
  type OutboxEvent,
  type Phase,
  type RoomEvent,
  type RoomState,
  type RoomStatusInfo,
  type SessionInfo,
  type StopReason,
  type WebSocketConstructor,
  type WebSocketLike,
} from './client.js';
export { Backoff, type BackoffOptions } from './backoff.js';
export { type Clock, systemClock } from './clock.js';
export { browserEnvironment, staticEnvironment, type Environment, type EnvironmentEvent } from './environment.js';
export type { Position } from './protocol.js';
export type { KeyValueStorage, OutboxStorageChoice, OutboxStorageKind } from './storage.js';
