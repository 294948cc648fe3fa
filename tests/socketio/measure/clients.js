// The idle clients the measurements connect: a Socket.IO client on the websocket transport, and
// a native WebSocket client (connected once the welcome frame came).
'use strict';

const WebSocket = require('ws');
const h = require('../lib/harness');

async function sioClient(base, token, waitMs = 30_000) {
  const s = h.client(null, base, { transports: ['websocket'], auth: { token }, reconnection: false });
  await h.connected(s, waitMs);
  return s;
}

async function nativeClient(base, token) {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/v1/ws?token=${token}`);
  await new Promise((resolve, reject) => {
    ws.once('message', resolve); // welcome
    ws.once('error', reject);
  });
  return ws;
}

module.exports = { nativeClient, sioClient };
