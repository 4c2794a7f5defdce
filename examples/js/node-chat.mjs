// A minimal Node.js client of tether: joins a room, prints every message
// (exactly once, in order, across reconnects), publishes each line of stdin
// and exits once stdin ended and every line was acknowledged.
//
//   npm ci --prefix examples/js          # @tether/client (this repo's clients/js) and ws
//   tether serve --allow-anonymous &
//   node examples/js/node-chat.mjs ws://127.0.0.1:8080/ alice lobby
import { createInterface } from 'node:readline';
import { TetherClient } from '@tether/client';
import WebSocket from 'ws'; // Node 20 has no global WebSocket (Node 22 does)

const [url = 'ws://127.0.0.1:8080/', token = 'alice', roomName = 'lobby'] = process.argv.slice(2);
const client = new TetherClient({ url, token, WebSocket: globalThis.WebSocket ?? WebSocket });
client.on('state', () => console.error(`[${client.describe()}]`));

const room = client.join(roomName, {
  onEvent: (e) => console.log(JSON.stringify({ offset: e.offset, data: e.data })),
  onHistoryLost: (h) => console.error(`[history lost after offset ${h.lastDelivered.offset}: refetch]`),
});

const pending = [];
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => pending.push(room.publish(line)));
lines.on('close', async () => {
  const acks = await Promise.allSettled(pending);
  const failed = acks.filter((a) => a.status === 'rejected');
  for (const f of failed) console.error(`[not sent: ${f.reason.code} ${f.reason.message}]`);
  client.dispose();
  process.exitCode = failed.length ? 1 : 0;
});
