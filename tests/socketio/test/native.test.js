// A native client (plain WebSocket on /v1/ws, PROTOCOL.md) and a Socket.IO client in one room
// see the same messages in the same order, whoever publishes them.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const h = require('../lib/harness');

test('a native client and a Socket.IO client in one room see the same messages in the same order', async (t) => {
  const node = await h.startNode(t);
  const tn = await h.token(node.base, h.unique('native'));
  const ts = await h.token(node.base, h.unique('sio'));
  const conv = await h.room(node.base, tn, 'mixed');

  const ws = new WebSocket(`${node.base.replace('http', 'ws')}/v1/ws?token=${tn}`);
  t.after(() => ws.terminate());
  const native = [];
  const replies = new Map();
  ws.on('message', (data) => {
    const f = JSON.parse(data.toString());
    if (f.type === 'message') native.push(f);
    else if (f.id !== undefined && f.id !== null) replies.get(f.id)?.(f);
  });
  let nextId = 1;
  const call = (frame) =>
    new Promise((resolve) => {
      const id = nextId++;
      replies.set(id, resolve);
      ws.send(JSON.stringify({ ...frame, id }));
    });
  await h.once(ws, 'open');

  const socket = h.client(t, node.base, { transports: ['websocket'], auth: { token: ts } });
  const sio = h.collect(socket);
  await h.connected(socket);
  assert.equal((await call({ type: 'subscribe', conv })).type, 'subscribed');
  await h.request(socket, 'subscribe', conv);

  const n = 40;
  const sent = [];
  for (let i = 0; i < n; i++) {
    // Both publish at once, without waiting: the order is decided by the server.
    sent.push(call({ type: 'publish', conv, body: { from: 'native', i } }));
    sent.push(h.request(socket, 'publish', { conv, body: { from: 'sio', i } }));
  }
  await Promise.all(sent);
  const got = await sio.waitFor(2 * n);
  const deadline = Date.now() + h.WAIT_MS;
  while (native.length < 2 * n && Date.now() < deadline) await h.sleep(20);
  const key = (m) => `${m.seq}:${JSON.stringify(m.body)}:${m.message_id}`;
  assert.equal(native.length, 2 * n);
  assert.deepEqual(got.map((m) => key(m.msg)), native.map(key));
  assert.deepEqual(
    got.map((m) => m.msg.seq),
    Array.from({ length: 2 * n }, (_, i) => i + 1),
  );
});
