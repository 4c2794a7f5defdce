// Node `ws` peer of the benchmarks: /fanout forwards every message to every
// other /fanout connection, /echo answers every message with itself.
// Usage: node ws_server.js PORT
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || 9002);
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
const fanout = new Set();

wss.on('connection', (ws, req) => {
  if (req.url === '/fanout') {
    fanout.add(ws);
    ws.on('close', () => fanout.delete(ws));
    ws.on('message', (data, isBinary) => {
      for (const peer of fanout)
        if (peer !== ws && peer.readyState === WebSocket.OPEN) peer.send(data, { binary: isBinary });
    });
  } else {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  }
});
wss.on('listening', () => console.log(`listening on 127.0.0.1:${port}`));
