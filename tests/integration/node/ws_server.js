// A WebSocket server of the kind tether::ReconnectingWebSocket talks to
// (exchange or device gateways): auth message first, then subscriptions.
// Built on Node `ws` -- a peer we did not write.
//
// stdout: one JSON line per event ({"event":"listening","port":N},
// {"event":"connection","conn":n,"headers":{...}}, {"event":"message","conn":n,"data":"..."}).
// stdin: one command per line, applied to every open connection:
//   drop | close CODE REASON | send TEXT | silence (stop answering pings) | answer (again)
'use strict';
const { WebSocketServer } = require('ws');
const readline = require('readline');

const KEY = process.env.AUTH_KEY || 'secret';
let autoPong = true;
let next = 1;
const conns = new Map();
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, autoPong: false });
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

wss.on('listening', () => out({ event: 'listening', port: wss.address().port }));
wss.on('connection', (ws, req) => {
  const id = next++;
  conns.set(id, ws);
  let authed = false;
  out({ event: 'connection', conn: id, headers: req.headers });
  ws.on('ping', (data) => { if (autoPong) ws.pong(data); });
  ws.on('message', (data, isBinary) => {
    const text = isBinary ? data.toString('base64') : data.toString();
    out({ event: 'message', conn: id, data: text, binary: isBinary });
    if (!authed) {
      let ok = false;
      try { const m = JSON.parse(text); ok = m.op === 'auth' && m.key === KEY; } catch (e) { ok = false; }
      ws.send(JSON.stringify({ op: 'auth', ok }));
      if (!ok) { ws.close(4004, 'bad key'); return; }
      authed = true;
      return;
    }
    if (text === 'ping') { ws.send('pong'); return; }
    if (text.startsWith('echo ')) ws.send(text.slice(5));
  });
  ws.on('close', () => conns.delete(id));
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, ...rest] = line.split(' ');
  for (const ws of conns.values()) {
    if (cmd === 'drop') ws.terminate();
    else if (cmd === 'close') ws.close(Number(rest[0]), rest.slice(1).join(' '));
    else if (cmd === 'send') ws.send(rest.join(' '));
  }
  if (cmd === 'silence') autoPong = false;
  if (cmd === 'answer') autoPong = true;
  out({ event: 'done', cmd });
});
