// The reconnect storm against Socket.IO 4.8 with its own client
// (socket.io-client, default reconnection: 1 s doubling to 5 s, ±50 %
// randomisation), the peer of `tether-loadgen storm`.
//
// N clients join R rooms; a publisher client emits "pm" {room, s} at a steady
// rate (s counts per room) and counts the server's acks. The caller kills the
// server with SIGKILL and restarts it, writing "kill MS" and "restarted MS"
// (wall clock) on stdin. Clients re-join their room on every connect unless
// Socket.IO recovered the session (connectionStateRecovery; impossible after a
// restart, the state lived in the dead process). Lost = acknowledged messages
// a subscriber never saw; duplicated = seen twice.
//
// Usage: node sio_storm.js URL CLIENTS ROOMS RATE [SETTLE_S]
'use strict';
const { io } = require('socket.io-client');
const readline = require('readline');

const [url, nArg, roomsArg, rateArg, settleArg] = process.argv.slice(2);
const N = Number(nArg), ROOMS = Number(roomsArg), RATE = Number(rateArg);
const SETTLE_MS = Number(settleArg || 60) * 1000;

const state = [];
let joined = 0, killedAt = 0, restartedAt = 0, back = 0, recovered = 0, down = 0;
const connectAt = [], attemptAt = [];
const ackedSet = Array.from({ length: ROOMS }, () => new Set());
let published = 0, ackCount = 0, stopped = false, reported = false;
const t0 = Date.now();

function report(complete) {
  if (reported) return;
  reported = true;
  let lost = 0, dups = 0;
  const backMs = [];
  for (let i = 0; i < N; i++) {
    const st = state[i], r = i % ROOMS;
    dups += st.dups;
    for (const s of ackedSet[r]) if (s > st.joinedAfter && !st.seen.has(s)) lost++;
    if (st.backAt) backMs.push(st.backAt - restartedAt);
  }
  backMs.sort((a, b) => a - b);
  process.stdout.write(JSON.stringify({
    scenario: 'storm', proto: 'sio', jitter: 'socket.io default (±50 %)', clients: N, rooms: ROOMS,
    rate: RATE, complete, down, back, resumed_sessions: recovered, new_sessions: back - recovered,
    all_back_ms: backMs.length ? backMs[backMs.length - 1] : -1,
    median_back_ms: backMs.length ? backMs[Math.floor(backMs.length / 2)] : -1,
    published, acked: ackCount, lost, duplicated: dups,
    restart_after_kill_ms: restartedAt - killedAt,
    handshake_ms: connectAt.map((t) => t - killedAt),
    attempt_ms: attemptAt.map((t) => t - killedAt), backoff_cap_ms: 5000,
  }) + '\n', () => process.exit(0));
}

// Everyone is back: stop the flow; report once no ack arrived for 1 s (an
// emit in flight when the server died is never acknowledged, and what a
// subscriber missed while away never comes back).
let lastAckAt = 0, finishing = false;
function checkDone() {
  if (!restartedAt || back < N || finishing) return;
  stopped = true;
  finishing = true;
  const poll = setInterval(() => {
    if (Date.now() - lastAckAt >= 1000) {
      clearInterval(poll);
      report(true);
    }
  }, 100);
}

for (let i = 0; i < N; i++) {
  const room = `storm-${i % ROOMS}`;
  const st = { seen: new Set(), dups: 0, down: false, backAt: 0, joinedAfter: 0, first: true };
  state.push(st);
  const socket = io(url, { transports: ['websocket'], forceNew: true });
  socket.on('connect', () => {
    if (st.down) connectAt.push(Date.now());
    if (socket.recovered) recovered += st.down ? 1 : 0;
    else socket.emit('join', room, () => {
      if (st.first) {
        st.first = false;
        if (++joined === N) steady();
      }
      if (st.down && !st.backAt) {
        st.backAt = Date.now();
        back++;
        checkDone();
      }
    });
    if (socket.recovered && st.down && !st.backAt) {
      st.backAt = Date.now();
      back++;
      checkDone();
    }
  });
  socket.io.on('reconnect_attempt', () => {
    if (killedAt) attemptAt.push(Date.now());
  });
  socket.on('disconnect', () => {
    if (killedAt && !st.down) {
      st.down = true;
      down++;
    }
  });
  socket.on('pm', (d) => {
    if (st.seen.has(d.s)) st.dups++;
    else st.seen.add(d.s);
  });
}

let pub;
function steady() {
  process.stdout.write(JSON.stringify({ event: 'steady', connect_ms: Date.now() - t0 }) + '\n');
  pub = io(url, { transports: ['websocket'], forceNew: true });
  const next = new Array(ROOMS).fill(0);
  const started = Date.now();
  const tick = () => {
    if (stopped) return;
    const due = Math.floor((Date.now() - started) / 1000 * RATE);
    while (published < due) {
      const r = published % ROOMS;
      const s = ++next[r];
      published++;
      // socket.io-client buffers emits while disconnected and sends them on
      // reconnect; the ack arrives once the server broadcast the message.
      pub.emit('pm', { room: `storm-${r}`, s }, () => {
        ackCount++;
        lastAckAt = Date.now();
        ackedSet[r].add(s);
      });
    }
    setTimeout(tick, 5);
  };
  tick();
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, ms] = line.split(' ');
  if (cmd === 'kill') killedAt = Number(ms);
  if (cmd === 'restarted') {
    restartedAt = Number(ms);
    setTimeout(() => report(false), SETTLE_MS);
  }
});
