// Long-polling without sticky sessions: a polling-only stock client behind a round-robin nginx
// over two nodes works, because the node a request reaches forwards it to the session's owner.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

test('a polling-only client behind a round-robin nginx over two nodes gets every message', async (t) => {
  const redis = await h.startRedis(t);
  const ports = [await h.freePort(), await h.freePort()];
  const nginx = await h.startNginx(
    t,
    `upstream rr { server 127.0.0.1:${ports[0]}; server 127.0.0.1:${ports[1]}; }
server {
  listen 127.0.0.1:{port};
  proxy_http_version 1.1;
  proxy_buffering off;
  proxy_read_timeout 60s;
  location / { proxy_pass http://rr; }
}`,
  );
  const nodes = [];
  for (const [i, port] of ports.entries()) {
    nodes.push(await h.startNode(t, { redis: redis.url, nodeId: h.unique(`n${i + 1}`), port }));
  }
  const tok = await h.token(nodes[0].base, h.unique('u'));
  const conv = await h.room(nodes[0].base, tok, 'non-sticky');
  const socket = h.client(t, nginx.url, { transports: ['polling'], auth: { token: tok } });
  const messages = h.collect(socket);
  await h.connected(socket);
  const sid = socket.io.engine.id;
  assert.equal(await h.request(socket, 'subscribe', conv).then((s) => s.conv), conv);
  const n = 20;
  for (let i = 0; i < n; i++) {
    if (i % 2) await h.serverPublish(nodes[i % 2].base, conv, { i });
    else await h.request(socket, 'publish', { conv, body: { i } });
  }
  const list = await messages.waitFor(n);
  assert.deepEqual(list.map((m) => m.msg.body.i), Array.from({ length: n }, (_, i) => i));
  assert.equal(socket.io.engine.id, sid, 'one Engine.IO session throughout');
  assert.equal(socket.recovered, false);
});

test('stopping the test nginx leaves no worker behind on its port', async (t) => {
  const nginx = await h.startNginx(
    t,
    `server {
  listen 127.0.0.1:{port};
  location / { return 204; }
}`,
  );
  await h.stop(nginx.child);
  // A worker orphaned by a killed master would still hold the listening socket.
  assert.ok(await h.portClosed(nginx.port), `something still listens on ${nginx.port}`);
});
