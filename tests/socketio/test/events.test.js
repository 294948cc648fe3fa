// Every event of SOCKETIO.md and its error acknowledgements, with the native codes.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

test('subscribe, unsubscribe, publish, history and presence, with their errors', async (t) => {
  const node = await h.startNode(t);
  const alice = h.unique('alice');
  const bob = h.unique('bob');
  const ta = await h.token(node.base, alice);
  const tb = await h.token(node.base, bob);
  const pub = await h.room(node.base, ta, 'public');
  const priv = await h.room(node.base, ta, 'private', 'private');
  const a = h.client(t, node.base, { transports: ['websocket'], auth: { token: ta } });
  const b = h.client(t, node.base, { transports: ['websocket'], auth: { token: tb } });
  const bm = h.collect(b);
  await Promise.all([h.connected(a), h.connected(b)]);

  // subscribe and its errors
  assert.equal((await h.request(b, 'subscribe', `user:${alice}`)).error.code, 'forbidden');
  assert.equal((await h.request(b, 'subscribe', 'room:r_nope')).error.code, 'not_found');
  assert.equal((await h.request(b, 'subscribe', priv)).error.code, 'not_member');
  assert.equal((await h.request(b, 'subscribe', 'nonsense')).error.code, 'bad_request');
  assert.equal((await h.request(b, 'subscribe', 12)).error.code, 'bad_request');
  assert.equal((await h.request(b, 'subscribe', pub, 'x')).error.code, 'bad_request');
  const sub = await h.request(b, 'subscribe', pub);
  assert.deepEqual(Object.keys(sub).sort(), ['conv', 'epoch', 'head_seq']);

  // publish, idempotent retry, errors
  const first = await h.request(a, 'publish', { conv: pub, body: { n: 1 }, client_msg_id: 'c-1' });
  const again = await h.request(a, 'publish', { conv: pub, body: { n: 1 }, client_msg_id: 'c-1' });
  assert.deepEqual(again, first, 'a retry with the same client_msg_id gets the same answer');
  assert.deepEqual(Object.keys(first).sort(), ['conv', 'message_id', 'seq', 'ts']);
  assert.equal((await h.request(b, 'publish', { conv: priv, body: 1 })).error.code, 'not_member');
  assert.equal((await h.request(b, 'publish', { conv: 'room:r_nope', body: 1 })).error.code, 'not_found');
  assert.equal((await h.request(b, 'publish', { conv: pub })).error.code, 'bad_request');
  assert.equal((await h.request(b, 'publish', 'text')).error.code, 'bad_request');
  await h.request(a, 'publish', { conv: pub, body: { n: 2 } });
  const got = await bm.waitFor(2);
  assert.deepEqual(got.map((m) => m.msg.body), [{ n: 1 }, { n: 2 }], 'one copy of the retried message');

  // a direct message reaches the other user's own stream
  const dm = await h.request(a, 'publish', { conv: `user:${bob}`, body: 'psst' });
  assert.equal(dm.conv, `user:${bob}`);
  const withDm = await bm.waitFor(3);
  assert.equal(withDm[2].msg.conv, `user:${bob}`);
  assert.equal(withDm[2].msg.from, alice);

  // history
  const hist = await h.request(b, 'history', { conv: pub, limit: 10 });
  assert.equal(hist.conv, pub);
  assert.deepEqual(hist.messages.map((m) => m.seq), [1, 2]);
  const after = await h.request(b, 'history', { conv: pub, after: 1 });
  assert.deepEqual(after.messages.map((m) => m.seq), [2]);
  assert.equal((await h.request(b, 'history', { conv: pub, limit: 0 })).error.code, 'bad_request');
  assert.equal((await h.request(b, 'history', { conv: priv })).error.code, 'not_member');
  assert.equal((await h.request(b, 'history', pub)).error.code, 'bad_request');

  // presence
  const pres = await h.request(a, 'presence', pub);
  assert.deepEqual(pres, { conv: pub, users: [{ user_id: bob, connections: 1 }] });
  assert.equal((await h.request(b, 'presence', `user:${alice}`)).error.code, 'forbidden');
  const own = await h.request(b, 'presence', `user:${bob}`);
  assert.deepEqual(own.users, [{ user_id: bob, connections: 1 }]);

  // unsubscribe
  assert.deepEqual(await h.request(b, 'unsubscribe', pub), { conv: pub });
  await h.request(a, 'publish', { conv: pub, body: { n: 3 } });
  await h.request(a, 'publish', { conv: `user:${bob}`, body: 'marker' });
  const last = await bm.waitFor(4);
  assert.equal(last[3].msg.body, 'marker', 'nothing more from the room after unsubscribe');

  // unknown events, with and without an ack
  b.emit('no-such-event', 1);
  assert.equal((await h.request(b, 'no-such-event', 1)).error.code, 'bad_request');
  assert.ok(b.connected);
});

test('a publish as large as maxPayload gets its answer', async (t) => {
  // maxPayload is the node's --max-frame-bytes, and the native frame a publish becomes is a few
  // bytes longer than its packet: a packet within the limit may make a frame over it.
  const max = 2048;
  const node = await h.startNode(t, { args: ['--max-frame-bytes', String(max)] });
  const tok = await h.token(node.base, h.unique('u'));
  const conv = await h.room(node.base, tok, 'large');
  const socket = h.client(t, node.base, { transports: ['websocket'], auth: { token: tok } });
  await h.connected(socket);
  // The WebSocket message: `42`, the ack id (0: the socket's first), the event's JSON array.
  const message = (body) => `420${JSON.stringify(['publish', { conv, body }])}`.length;
  const body = 'x'.repeat(max - message(''));
  assert.equal(message(body), max);
  const refused = await h.request(socket, 'publish', { conv, body });
  assert.equal(refused.error.code, 'too_large');
  const published = await h.request(socket, 'publish', { conv, body: body.slice(100) });
  assert.equal(published.seq, 1);
  assert.ok(socket.connected);
});

test('subscribe with since replays the missed messages after the ack', async (t) => {
  const node = await h.startNode(t);
  const tok = await h.token(node.base, h.unique('u'));
  const conv = await h.room(node.base, tok, 'since');
  for (let i = 1; i <= 5; i++) await h.serverPublish(node.base, conv, { i });
  const socket = h.client(t, node.base, { transports: ['polling'], auth: { token: tok } });
  const messages = h.collect(socket);
  await h.connected(socket);
  const sub = await h.request(socket, 'subscribe', conv, { since: 2 });
  assert.equal(sub.head_seq, 5);
  assert.equal(sub.recovered, true);
  assert.equal(sub.from_seq, 3);
  const list = await messages.waitFor(3);
  assert.deepEqual(list.map((m) => m.msg.seq), [3, 4, 5]);
});
