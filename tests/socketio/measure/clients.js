// The idle clients the measurements connect: a Socket.IO client on the websocket transport (or,
// with UPGRADE=1, socket.io-client's default: long-polling first, then upgraded to a WebSocket),
// and a native WebSocket client (connected once the welcome frame came).
'use strict';

const WebSocket = require('ws');
const h = require('../lib/harness');

async function sioClient(base, token, waitMs = 30_000) {
  const upgrade = process.env.UPGRADE === '1';
  const transports = upgrade ? ['polling', 'websocket'] : ['websocket'];
  const s = h.client(null, base, { transports, auth: { token }, reconnection: false });
  await h.connected(s, waitMs);
  if (upgrade && s.io.engine.transport.name !== 'websocket') {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no upgrade within ${waitMs} ms`)), waitMs);
      s.io.engine.once('upgrade', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
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
