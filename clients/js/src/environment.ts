// What the client hears from its environment: the network going offline or
// online, the page becoming visible again, and the page lifecycle (pagehide,
// pageshow from the back/forward cache). Injectable, for tests, React
// Native, workers and anything else that is not a browser window.

export type EnvironmentEvent =
  | { type: 'online' }
  | { type: 'offline' }
  | { type: 'visible' }
  | { type: 'pagehide'; persisted: boolean }
  | { type: 'pageshow'; persisted: boolean };

export interface Environment {
  /** Whether the host believes it is online now. */
  online(): boolean;
  /** Calls `fn` on every event; returns the function that stops it. */
  subscribe(fn: (e: EnvironmentEvent) => void): () => void;
}

/** A host with no events (Node): always online. */
export const staticEnvironment: Environment = {
  online: () => true,
  subscribe: () => () => {},
};

interface Target {
  addEventListener(type: string, fn: (e: Event) => void): void;
  removeEventListener(type: string, fn: (e: Event) => void): void;
}

/** The browser's window, document and navigator, where they exist. */
export function browserEnvironment(): Environment {
  const g = globalThis as unknown as {
    window?: Target;
    document?: Target & { visibilityState?: string };
    navigator?: { onLine?: boolean };
  };
  if (!g.window || typeof g.window.addEventListener !== 'function') return staticEnvironment;
  const win = g.window;
  const doc = g.document;
  return {
    online: () => g.navigator?.onLine !== false,
    subscribe(fn) {
      const on: Array<[Target, string, (e: Event) => void]> = [
        [win, 'online', () => fn({ type: 'online' })],
        [win, 'offline', () => fn({ type: 'offline' })],
        [win, 'pagehide', (e) => fn({ type: 'pagehide', persisted: !!(e as PageTransitionEvent).persisted })],
        [win, 'pageshow', (e) => fn({ type: 'pageshow', persisted: !!(e as PageTransitionEvent).persisted })],
      ];
      if (doc) on.push([doc, 'visibilitychange', () => doc.visibilityState === 'visible' && fn({ type: 'visible' })]);
      for (const [t, name, h] of on) t.addEventListener(name, h);
      return () => {
        for (const [t, name, h] of on) t.removeEventListener(name, h);
      };
    },
  };
}
