// The test harness: real `switchboard` processes on free 127.0.0.1 ports with their own data
// directories, a real redis-server for cluster tests, a real nginx for the non-sticky test,
// and the official socket.io-client. Everything a test starts is registered and killed when
// the test ends (`t.after`), and again when the process exits, even after a failure.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { io } = require('socket.io-client');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const BIN = process.env.SWITCHBOARD_BIN || path.join(ROOT, 'target', 'debug', 'switchboard');
const API_KEY = 'test-api-key';
/** Longest wait for anything a test expects (SWITCHBOARD_WAIT_MS: longer, e.g. for a node
 * started under valgrind on a busy machine). */
const WAIT_MS = Number(process.env.SWITCHBOARD_WAIT_MS || 10_000);

const children = new Set();
const dirs = new Set();

function killAll() {
  for (const c of children) {
    try {
      c.kill(c.stopSignal || 'SIGKILL');
    } catch (_) {}
  }
  children.clear();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  dirs.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAll();
    process.exit(1);
  });
}

function tempDir(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `sb-sio-${prefix}-`));
  dirs.add(d);
  return d;
}

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves whether something accepts a TCP connection on 127.0.0.1:`port` now. */
function accepts(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/** Resolves once something accepts TCP connections on `port`. */
async function waitListening(port, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await accepts(port)) return;
    await sleep(25);
  }
  throw new Error(`nothing listens on port ${port} after ${ms} ms`);
}

/**
 * Stops `child` when test `t` ends (and at exit). `stopSignal` is how: SIGKILL, unless the
 * process must end its own children first (nginx's master ends its workers on SIGTERM; killed,
 * it left a worker holding the port behind every test run).
 */
function track(child, t, stopSignal = 'SIGKILL') {
  child.stopSignal = stopSignal;
  children.add(child);
  child.on('exit', () => children.delete(child));
  if (t) t.after(() => stop(child));
  return child;
}

/** Stops a tracked child with its stop signal and waits for it to exit (SIGKILL after 5 s). */
async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(child.stopSignal || 'SIGKILL');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** Resolves `true` once nothing accepts connections on `port` (within `ms`), else `false`. */
async function portClosed(port, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!(await accepts(port))) return true;
    await sleep(25);
  }
  return false;
}

/** A real redis-server on a free port. */
async function startRedis(t) {
  const port = await freePort();
  const dir = tempDir('redis');
  const bin = process.env.REDIS_SERVER || 'redis-server';
  const child = track(
    spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
      stdio: 'ignore',
    }),
    t,
  );
  await waitListening(port);
  return { url: `redis://127.0.0.1:${port}`, child };
}

/** A real nginx on a free port; `{port}` in `httpBody` is its own port. */
async function startNginx(t, httpBody) {
  const port = await freePort();
  const dir = tempDir('nginx');
  const conf = `worker_processes 1;
error_log ${dir}/error.log warn;
pid ${dir}/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${httpBody.replaceAll('{port}', String(port))}
}
`;
  fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
  let bin = process.env.NGINX || 'nginx';
  if (!process.env.NGINX && fs.existsSync('/usr/sbin/nginx')) bin = '/usr/sbin/nginx';
  const child = track(
    spawn(bin, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: 'ignore' }),
    t,
    'SIGTERM',
  );
  await waitListening(port);
  return { url: `http://127.0.0.1:${port}`, port, child };
}

/**
 * A `switchboard serve` process. Options: `redis` (URL), `nodeId`, `port` (else a free one
 * chosen by the node), `publicUrl`, `args` (more flags), `pingIntervalMs` / `pingTimeoutMs`
 * (the Engine.IO heartbeat; 500 / 1000 unless given, `null` for the server's default).
 */
async function startNode(t, opts = {}) {
  const dataDir = tempDir('node');
  const args = [
    'serve',
    '--listen',
    `127.0.0.1:${opts.port || 0}`,
    '--tcp-listen',
    'off',
    '--api-key',
    API_KEY,
    '--data-dir',
    dataDir,
  ];
  // The tests' short heartbeat; `null` leaves the server's default (25 s / 20 s), e.g. for a
  // measurement that should not charge pings to deliveries.
  const pingInterval = opts.pingIntervalMs === undefined ? 500 : opts.pingIntervalMs;
  const pingTimeout = opts.pingTimeoutMs === undefined ? 1000 : opts.pingTimeoutMs;
  if (pingInterval !== null) args.push('--socketio-ping-interval-ms', String(pingInterval));
  if (pingTimeout !== null) args.push('--socketio-ping-timeout-ms', String(pingTimeout));
  if (opts.redis) args.push('--redis', opts.redis, '--lease-ms', String(opts.leaseMs || 1500));
  if (opts.nodeId) args.push('--node-id', opts.nodeId);
  if (opts.publicUrl) args.push('--public-url', opts.publicUrl);
  args.push(...(opts.args || []));
  const child = track(
    spawn(BIN, args, {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: {
        ...process.env,
        RUST_LOG: process.env.RUST_LOG || 'warn',
        SWITCHBOARD_REGISTER_PER_IP_PER_MIN: '0',
        SWITCHBOARD_LOGIN_PER_IP_PER_MIN: '0',
      },
    }),
    t,
  );
  const lines = readline.createInterface({ input: child.stdout });
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('switchboard did not print `listening on` in time')), WAIT_MS);
    child.on('exit', (code) => reject(new Error(`switchboard exited (${code}) before listening`)));
    lines.on('line', (line) => {
      const i = line.indexOf('listening on ');
      if (i >= 0) {
        clearTimeout(timer);
        resolve(line.slice(i + 'listening on '.length).split(/\s+/)[0]);
      }
    });
  });
  const base = `http://${addr}`;
  return {
    base,
    child,
    /** SIGKILL: the node crashes. */
    kill() {
      child.kill('SIGKILL');
    },
    exited() {
      return new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) resolve();
        else child.on('exit', () => resolve());
      });
    },
  };
}

/** An HTTP request with a JSON body; resolves `{status, body}`. */
async function http(method, url, { token, apiKey, body } = {}) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (apiKey) headers['x-api-key'] = apiKey;
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch (_) {}
  return { status: res.status, body: json, text };
}

/** A token for `userId` from the server API (`ttl_s` optional). */
async function token(base, userId, ttlS) {
  const r = await http('POST', `${base}/v1/server/users/${encodeURIComponent(userId)}/tokens`, {
    apiKey: API_KEY,
    body: ttlS ? { ttl_s: ttlS } : {},
  });
  if (r.status !== 201) throw new Error(`token: ${r.status} ${r.text}`);
  return r.body.token;
}

/** A room made by the holder of `tok`; returns its conversation name `room:<id>`. */
async function room(base, tok, name = 'room', visibility = 'public') {
  const r = await http('POST', `${base}/v1/rooms`, { token: tok, body: { name, visibility } });
  if (r.status !== 201) throw new Error(`room: ${r.status} ${r.text}`);
  return `room:${r.body.room_id}`;
}

/** A server-API publish. */
async function serverPublish(base, conv, body) {
  const r = await http('POST', `${base}/v1/server/publish`, { apiKey: API_KEY, body: { conv, body } });
  if (r.status !== 201) throw new Error(`server publish: ${r.status} ${r.text}`);
  return r.body;
}

/** A unique name for users and rooms of one test. */
let counter = 0;
function unique(prefix) {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}

/** A socket.io-client socket, closed when the test ends. */
function client(t, url, opts = {}) {
  const socket = io(url, {
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    timeout: 5000,
    forceNew: true,
    ...opts,
  });
  if (t) t.after(() => socket.close());
  return socket;
}

/** The next `event` of `emitter` (its arguments as an array), or a timeout error. */
function once(emitter, event, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`no ${event} within ${ms} ms`));
    }, ms);
    function on(...args) {
      clearTimeout(timer);
      resolve(args);
    }
    emitter.once(event, on);
  });
}

/** Connects and resolves once connected; rejects on connect_error. */
async function connected(socket, ms = WAIT_MS) {
  if (socket.connected) return socket;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not connected within ${ms} ms`)), ms);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('connect_error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** Emits `event` with `args` and resolves the acknowledgement's first argument. */
function request(socket, event, ...args) {
  return socket.timeout(WAIT_MS).emitWithAck(event, ...args);
}

/** Collects `message` events of a socket: `{list, waitFor(n)}`. */
function collect(socket) {
  const list = [];
  const waiters = [];
  socket.on('message', (msg, offset) => {
    list.push({ msg, offset });
    for (const w of [...waiters]) w();
  });
  return {
    list,
    waitFor(n, ms = WAIT_MS) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (list.length >= n) {
            clearTimeout(timer);
            waiters.splice(waiters.indexOf(check), 1);
            resolve(list);
          }
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(check), 1);
          reject(new Error(`${list.length} of ${n} messages within ${ms} ms`));
        }, ms);
        waiters.push(check);
        check();
      });
    },
  };
}

module.exports = {
  API_KEY,
  WAIT_MS,
  client,
  collect,
  connected,
  freePort,
  http,
  once,
  portClosed,
  request,
  room,
  serverPublish,
  sleep,
  startNginx,
  startNode,
  startRedis,
  stop,
  token,
  unique,
};
