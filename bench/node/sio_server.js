// Socket.IO 4.8 peer of the benchmarks, with connectionStateRecovery on:
// event "m" is broadcast to every other socket, event "e" is echoed; for the
// reconnect storm (sio_storm.js), "join" enters a room and "pm" {room, s} is
// broadcast to the room, then acknowledged.
// WebSocket transport only (the load generator speaks Engine.IO v4 over it).
// Usage: node sio_server.js PORT
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.argv[2] || 9003);
const io = new Server({
  transports: ['websocket'],
  perMessageDeflate: false,
  connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000, skipMiddlewares: true },
});
io.on('connection', (socket) => {
  socket.on('m', (data) => socket.broadcast.emit('m', data));
  socket.on('e', (data) => socket.emit('e', data));
  socket.on('join', (room, ack) => {
    socket.join(room);
    if (typeof ack === 'function') ack();
  });
  socket.on('pm', (data, ack) => {
    io.to(data.room).emit('pm', data);
    if (typeof ack === 'function') ack();
  });
});
const httpServer = http.createServer();
io.attach(httpServer);
httpServer.listen(port, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${port}`));
