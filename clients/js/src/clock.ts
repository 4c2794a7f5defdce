// The clock and timers the client uses. Injectable, so that every rule that
// depends on time is tested in virtual time (test/unit/virtual.ts).
//
// `now()` is the wall clock in milliseconds. The client judges every
// deadline by it, never by how many timer callbacks ran: a hidden browser
// tab may run timers once a minute, and the client must still see that a
// heartbeat ack is overdue (or not) when a late timer finally fires.

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof setTimeout>),
};
