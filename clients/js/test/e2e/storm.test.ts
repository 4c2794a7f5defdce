// A reconnect storm: 200 SDK clients in Node across a kill -9 and restart of
// the gateway. Their attempts are spread by the backoff's jitter, and none
// loses or duplicates an event.
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { TetherClient, type WebSocketConstructor } from '../../src/index.js';
import { Gateway, token, until } from './servers.js';

describe('reconnect storm', () => {
  it('200 clients across a gateway restart: attempts spread by jitter, nothing lost', async () => {
    const gw = await new Gateway({ extra: ['--max-connections', '1000'] }).start();
    const N = 200;
    const tok = token('storm');
    const clients: TetherClient[] = [];
    const got: number[][] = [];
    const firstRetry: number[] = [];
    let killedAt = 0;
    try {
      for (let i = 0; i < N; i++) {
        const c = new TetherClient({ url: gw.url, token: tok, WebSocket: WebSocket as unknown as WebSocketConstructor });
        const mine: number[] = [];
        got.push(mine);
        c.join('storm', { onEvent: (e) => mine.push(e.data as number) });
        let armed = false;
        c.on('status', (s) => {
          if (killedAt && !armed && s.nextRetryAt !== undefined) {
            armed = true;
            firstRetry.push(s.nextRetryAt - killedAt);
          }
        });
        clients.push(c);
      }
      await Promise.all(clients.map((c) => c.waitConnected({ timeoutMs: 20_000 })));
      for (let i = 0; i < 10; i++) await gw.admin('/api/rooms/storm/publish', i);
      await until(() => got.every((g) => g.length === 10), 20_000, 'the first ten events');
      killedAt = Date.now();
      await gw.kill();
      await gw.start();
      for (let i = 10; i < 20; i++) await gw.admin('/api/rooms/storm/publish', i);
      await Promise.all(clients.map((c) => c.waitConnected({ timeoutMs: 30_000 })));
      await until(() => got.every((g) => g.length >= 20), 30_000, 'every event at every client');
      const want = Array.from({ length: 20 }, (_, i) => i);
      for (const g of got) expect(g).toEqual(want);
      // The first retry after the loss: 500 ms +/- 25 %, spread, not one instant.
      expect(firstRetry.length).toBe(N);
      const sorted = [...firstRetry].sort((a, b) => a - b);
      const spread = sorted[Math.floor(N * 0.9)] - sorted[Math.floor(N * 0.1)];
      console.log(`[figures] storm: ${N} clients, first retry 10th-90th percentile spread ${spread} ms, ` +
        `reconnects ${clients.reduce((n, c) => n + c.metrics.reconnects, 0)}`);
      expect(spread).toBeGreaterThan(100);
      expect(new Set(firstRetry).size).toBeGreaterThan(N / 4);
    } finally {
      for (const c of clients) c.dispose();
      await gw.dispose();
    }
  });
});
