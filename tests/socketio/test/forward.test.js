// Forwarding, request by request (raw Engine.IO over HTTP): a polling request that reaches the
// node not owning its sid is answered by the owner through it; an upgrade there is refused
// with 400; a request already forwarded once is never forwarded again.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const h = require('../lib/harness');

test('polling requests for another node\'s session are forwarded; upgrades and loops are refused', async (t) => {
  const redis = await h.startRedis(t);
  const n1 = await h.startNode(t, { redis: redis.url, nodeId: h.unique('n1') });
  const n2 = await h.startNode(t, { redis: redis.url, nodeId: h.unique('n2') });
  const tok = await h.token(n1.base, h.unique('u'));
  const path = '/socket.io/?EIO=4&transport=polling';

  const open = await fetch(`${n1.base}${path}`).then((r) => r.text());
  assert.equal(open[0], '0');
  const { sid } = JSON.parse(open.slice(1));
  assert.match(sid, /~/, 'the sid names its node');

  // CONNECT through the other node.
  const post = await fetch(`${n2.base}${path}&sid=${sid}`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain;charset=UTF-8' },
    body: `40${JSON.stringify({ token: tok })}`,
  });
  assert.equal(post.status, 200);
  assert.equal(await post.text(), 'ok');
  // The CONNECT reply, read through the other node as well.
  const reply = await fetch(`${n2.base}${path}&sid=${sid}`).then((r) => r.text());
  assert.ok(reply.startsWith('40'), reply);
  const connect = JSON.parse(reply.slice(2));
  assert.deepEqual(Object.keys(connect).sort(), ['pid', 'sid']);
  assert.match(connect.pid, /^[0-9a-f]{32}$/);

  // An upgrade on the node that does not own the session: 400, the client stays on polling.
  const ws = new WebSocket(`${n2.base.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket&sid=${sid}`);
  const [err] = await h.once(ws, 'error');
  assert.match(String(err.message), /400/);

  // A request marked as forwarded already is not forwarded again.
  const loop = await fetch(`${n2.base}${path}&sid=${sid}`, { headers: { 'x-switchboard-forwarded-by': 'n-x' } });
  assert.equal(loop.status, 400);
  assert.deepEqual(await loop.json(), { code: 1, message: 'Session ID unknown' });

  // A sid naming no live node.
  const nowhere = await fetch(`${n2.base}${path}&sid=abc~n_gone`);
  assert.equal(nowhere.status, 400);

  // The session still works on its owner.
  const direct = await fetch(`${n1.base}${path}&sid=${sid}`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain;charset=UTF-8' },
    body: '42["presence","user:nobody"]',
  });
  assert.equal(direct.status, 200);
});
