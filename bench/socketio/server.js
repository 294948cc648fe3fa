// The Socket.IO v4 peer of the Switchboard benchmarks: the same scenarios, written the way a
// team would write them on Socket.IO, so `switchboard-bench --protocol socketio` can measure
// both servers with one client.
//
//   node server.js --port 7800                          # single node
//   node server.js --port 7801 --redis redis://127.0.0.1:6390/   # with @socket.io/redis-adapter
//   node server.js --port 7802 --redis-cluster redis://127.0.0.1:7001,redis://127.0.0.1:7002
//       # on a Redis Cluster: the sharded adapter (createShardedAdapter, SPUBLISH/SSUBSCRIBE,
//       # subscriptionMode "dynamic": a room's channel is subscribed only while a local socket
//       # is in it) over node-redis cluster clients
//
// What it does:
//   - POST /tokens/<user>   -> {"token","user_id"}: a random token for that user (kept in memory,
//                              or in Redis with --redis / --redis-cluster so every node accepts it);
//   - Socket.IO connect with auth {"token"}: the middleware looks the token up; the socket joins
//     the room "user:<user>" (its personal room, for direct messages);
//   - event "sub" (room, ack)       -> joins the room, acks {"ok":true};
//   - event "dm" ({to, body}, ack)  -> emits "message" {from, to, body} to room "user:<to>", acks;
//   - event "pub" ({room, body}, ack) -> emits "message" {room, body} to the room, acks;
//     (the `pipeline` scenario sends `pub` or `dm` events from ONE socket, each with an ack,
//     keeping 64 outstanding: the same as Switchboard's pipelined `publish` frames and their
//     `published` answers; Socket.IO handles a socket's events in order, so its acks come back
//     in send order too);
//   - POST /publish {"room","body"} -> emits "message" {room, body} to the room (the server-side
//                                      publish an application back end would do);
//   - GET /healthz.
// Only the websocket transport is enabled (the bench speaks Engine.IO v4 over a raw WebSocket);
// per-message deflate is off, as on Switchboard. It listens on 127.0.0.x only.
'use strict';

const http = require('http');
const crypto = require('crypto');
const { Server } = require('socket.io');

function parseArgs(argv) {
  const args = { port: 7800, host: '127.0.0.1', redis: null, redisCluster: null };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port') args.port = Number(next());
    else if (a === '--host') args.host = next();
    else if (a === '--redis') args.redis = next();
    else if (a === '--redis-cluster') args.redisCluster = next().split(',').filter((u) => u);
    else throw new Error(`unknown argument ${a}`);
  }
  if (args.redis && args.redisCluster) throw new Error('--redis and --redis-cluster exclude each other');
  if (args.redisCluster && args.redisCluster.length === 0) throw new Error('--redis-cluster needs URLs');
  if (!/^127\.\d+\.\d+\.\d+$/.test(args.host)) throw new Error('--host must be in 127.0.0.0/8');
  if (!Number.isInteger(args.port) || args.port < 1 || args.port > 65535) throw new Error('bad --port');
  return args;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

async function main() {
  const args = parseArgs(process.argv);

  // Token store: in memory on one node; in Redis with --redis, so any node accepts any token.
  let tokens;
  let redisClients = [];
  if (args.redis || args.redisCluster) {
    const { createClient, createCluster } = require('redis');
    const { createAdapter, createShardedAdapter } = require('@socket.io/redis-adapter');
    const pub = args.redis
      ? createClient({ url: args.redis })
      : createCluster({ rootNodes: args.redisCluster.map((url) => ({ url })) });
    const sub = pub.duplicate();
    const store = pub.duplicate();
    for (const c of [pub, sub, store]) c.on('error', (e) => console.error('redis:', e.message));
    await Promise.all([pub.connect(), sub.connect(), store.connect()]);
    redisClients = [pub, sub, store];
    tokens = {
      set: (t, u) => store.set(`bench:token:${t}`, u, { EX: 86400 }),
      get: (t) => store.get(`bench:token:${t}`),
    };
    tokens.adapter = args.redis
      ? createAdapter(pub, sub)
      : createShardedAdapter(pub, sub, { subscriptionMode: 'dynamic' });
  } else {
    const map = new Map();
    tokens = { set: async (t, u) => map.set(t, u), get: async (t) => map.get(t) };
  }

  const server = http.createServer(async (req, res) => {
    try {
      const url = req.url || '/';
      if (req.method === 'POST' && url.startsWith('/tokens/')) {
        await readBody(req);
        const user = decodeURIComponent(url.slice('/tokens/'.length));
        if (!user || user.includes('/')) return send(res, 400, { error: 'bad user id' });
        const token = crypto.randomBytes(24).toString('hex');
        await tokens.set(token, user);
        return send(res, 201, { token, user_id: user });
      }
      if (req.method === 'POST' && url === '/publish') {
        const msg = JSON.parse(await readBody(req));
        if (typeof msg.room !== 'string') return send(res, 400, { error: 'room required' });
        io.to(msg.room).emit('message', { room: msg.room, body: msg.body });
        return send(res, 200, { ok: true });
      }
      if (req.method === 'GET' && url === '/healthz') {
        return send(res, 200, { status: 'ok', connections: io.engine.clientsCount });
      }
      return send(res, 404, { error: 'not found' });
    } catch (e) {
      return send(res, 400, { error: String(e && e.message) });
    }
  });

  const io = new Server(server, {
    transports: ['websocket'],
    perMessageDeflate: false,
    serveClient: false,
    maxHttpBufferSize: 1e6,
  });
  if (tokens.adapter) io.adapter(tokens.adapter);

  io.use(async (socket, next) => {
    try {
      const token = socket.handshake.auth && socket.handshake.auth.token;
      const user = token ? await tokens.get(String(token)) : null;
      if (!user) return next(new Error('unauthorized'));
      socket.data.user = user;
      next();
    } catch (e) {
      next(new Error('unavailable'));
    }
  });

  io.on('connection', (socket) => {
    const user = socket.data.user;
    socket.join(`user:${user}`);
    socket.on('sub', (room, ack) => {
      if (typeof room === 'string') socket.join(room);
      if (typeof ack === 'function') ack({ ok: typeof room === 'string' });
    });
    socket.on('dm', (msg, ack) => {
      if (msg && typeof msg.to === 'string') {
        io.to(`user:${msg.to}`).emit('message', { from: user, to: msg.to, body: msg.body });
      }
      if (typeof ack === 'function') ack({ ok: true });
    });
    socket.on('pub', (msg, ack) => {
      if (msg && typeof msg.room === 'string') {
        io.to(msg.room).emit('message', { room: msg.room, body: msg.body });
      }
      if (typeof ack === 'function') ack({ ok: true });
    });
  });

  server.listen(args.port, args.host, () => {
    // The line scripts wait for.
    console.log(`socket.io peer listening on ${args.host}:${args.port}${args.redis ? ' (redis adapter)' : args.redisCluster ? ' (sharded redis adapter)' : ''}`);
  });

  const stop = async () => {
    // A cluster client's quit can wait on a node forever: exit after a second regardless.
    setTimeout(() => process.exit(0), 1000).unref();
    io.close();
    for (const c of redisClients) {
      try { await c.quit(); } catch (_) { /* already gone */ }
    }
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  console.error(`socket.io peer: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
