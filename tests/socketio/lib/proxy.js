// A switchable TCP proxy on 127.0.0.1: clients connect to it, and it forwards each connection
// to the node it currently points at. Tests point it at another node to play the part of a
// client's reconnect reaching a different node (a load balancer, a DNS change).
'use strict';

const net = require('node:net');

async function startProxy(t, targetPort) {
  let target = targetPort;
  const open = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    open.add(client);
    open.add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy = {
    url: `http://127.0.0.1:${server.address().port}`,
    /** New connections go to `port`. */
    pointAt(port) {
      target = port;
    },
    close() {
      for (const s of open) s.destroy();
      server.close();
    },
  };
  t.after(() => proxy.close());
  return proxy;
}

function portOf(base) {
  return Number(new URL(base).port);
}

module.exports = { startProxy, portOf };
