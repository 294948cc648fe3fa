// Websocket-only, polling-only and upgrading stock clients: connect with a token, get the
// CONNECT reply with a pid, subscribe, publish, and receive their own message after the ack,
// with a recovery offset as its last argument.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

for (const [name, opts] of [
  ['websocket only', { transports: ['websocket'] }],
  ['polling only', { transports: ['polling'] }],
  ['polling, then upgraded to websocket', { transports: ['polling', 'websocket'] }],
]) {
  test(`a ${name} client subscribes, publishes and gets its own message after the ack`, async (t) => {
    const node = await h.startNode(t);
    const tok = await h.token(node.base, h.unique('u'));
    const conv = await h.room(node.base, tok, 'transports');
    const socket = h.client(t, node.base, { ...opts, auth: { token: tok } });
    const messages = h.collect(socket);
    await h.connected(socket);
    const sub = await h.request(socket, 'subscribe', conv);
    assert.equal(sub.conv, conv);
    assert.equal(sub.head_seq, 0);
    assert.equal(typeof sub.epoch, 'string');
    const order = [];
    socket.on('message', () => order.push('message'));
    // The callback form: it runs as the ack packet is read (a promise would resolve later).
    const ack = await new Promise((resolve, reject) => {
      socket.timeout(h.WAIT_MS).emit('publish', { conv, body: { text: 'hi', n: 1 } }, (err, a) => {
        order.push('ack');
        if (err) reject(err);
        else resolve(a);
      });
    });
    assert.equal(ack.conv, conv);
    assert.equal(ack.seq, 1);
    assert.match(ack.message_id, /^m_/);
    const [got] = await messages.waitFor(1);
    assert.equal(got.msg.conv, conv);
    assert.equal(got.msg.seq, 1);
    assert.deepEqual(got.msg.body, { text: 'hi', n: 1 });
    assert.equal(got.msg.message_id, ack.message_id);
    assert.equal(typeof got.offset, 'string', 'the offset is the last argument');
    assert.deepEqual(order, ['ack', 'message'], 'the ack comes before the own message');
    if (name.startsWith('polling, then')) {
      const deadline = Date.now() + h.WAIT_MS;
      while (socket.io.engine.transport.name !== 'websocket' && Date.now() < deadline) await h.sleep(20);
      assert.equal(socket.io.engine.transport.name, 'websocket', 'the client upgraded');
      await h.request(socket, 'publish', { conv, body: 'after upgrade' });
      const list = await messages.waitFor(2);
      assert.equal(list[1].msg.seq, 2);
    } else {
      assert.equal(socket.io.engine.transport.name, opts.transports[0]);
    }
  });
}

test('many messages arrive in seq order with offsets that never go backwards', async (t) => {
  const node = await h.startNode(t);
  const tok = await h.token(node.base, h.unique('u'));
  const conv = await h.room(node.base, tok, 'order');
  const socket = h.client(t, node.base, { transports: ['polling'], auth: { token: tok } });
  const messages = h.collect(socket);
  await h.connected(socket);
  await h.request(socket, 'subscribe', conv);
  const n = 60;
  await Promise.all(Array.from({ length: n }, (_, i) => h.serverPublish(node.base, conv, { i })));
  const list = await messages.waitFor(n);
  assert.deepEqual(
    list.map((m) => m.msg.seq),
    Array.from({ length: n }, (_, i) => i + 1),
  );
  const deltas = list.map((m) => m.offset.split('.').map((d) => (d ? parseInt(d, 36) : 0)));
  for (let i = 1; i < deltas.length; i++) {
    for (let s = 0; s < Math.max(deltas[i].length, deltas[i - 1].length); s++) {
      assert.ok((deltas[i][s] || 0) >= (deltas[i - 1][s] || 0), `offset ${list[i].offset} after ${list[i - 1].offset}`);
    }
  }
});

test('binary payloads: a publish with an attachment is bad_request, other events stay usable', async (t) => {
  const node = await h.startNode(t);
  const tok = await h.token(node.base, h.unique('u'));
  const conv = await h.room(node.base, tok, 'binary');
  const socket = h.client(t, node.base, { transports: ['websocket'], auth: { token: tok } });
  await h.connected(socket);
  const bad = await h.request(socket, 'publish', { conv, body: Buffer.from([1, 2, 3]) });
  assert.equal(bad.error.code, 'bad_request');
  const unknown = await h.request(socket, 'upload', Buffer.from('xyz'));
  assert.equal(unknown.error.code, 'bad_request');
  const ok = await h.request(socket, 'publish', { conv, body: 'text' });
  assert.equal(ok.seq, 1);
});
