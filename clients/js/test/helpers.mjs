// Test fixtures: a real `switchboard` node on a free port with its own data dir (restartable
// on the same port and dir, killable with SIGKILL), users made over its HTTP API, a TCP proxy
// that can refuse WebSocket upgrades, mute or cut connections and drop chosen WebSocket frames,
// and a wait-until helper. Everything runs on 127.0.0.1 and is bounded in time.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository root. */
export const ROOT = path.resolve(here, "../../..");
/** The server binary the tests run (built by `cargo build`). */
export const BINARY = process.env.SWITCHBOARD_BIN ?? path.join(ROOT, "target/debug/switchboard");
/** The server API key every test node is started with. */
export const API_KEY = "test-key-0123456789";

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Waits until `fn()` returns a truthy value (polled every 20 ms), or fails after `ms`. */
export async function until(what, fn, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A real node: `start()`, `kill()` (SIGKILL), `start()` again on the same port and data dir. */
export class Node {
  constructor({ publicUrl, args = [] } = {}) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), "sb-js-"));
    this.publicUrl = publicUrl;
    this.args = args;
    this.proc = null;
  }

  static async start(opts) {
    const n = new Node(opts);
    n.port = await freePort();
    await n.start();
    return n;
  }

  /** The node's own base URL. */
  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    const args = [
      "serve", "--listen", `127.0.0.1:${this.port}`, "--tcp-listen", "off", "--data-dir", this.dir,
      "--api-key", API_KEY, "--probe-interval-ms", "200", "--shutdown-timeout-ms", "2000",
      "--drain-window-ms", "200", ...this.args,
    ];
    if (this.publicUrl) args.push("--public-url", this.publicUrl);
    this.proc = spawn(BINARY, args, { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, RUST_LOG: "warn" } });
    this.stderr = "";
    this.proc.stderr.on("data", (d) => {
      if (this.stderr.length < 20_000) this.stderr += d;
    });
    await until("the node to be ready", async () => {
      try {
        // A node with the dispatcher role is ready for clients once it dispatches (it probed
        // a gateway); any other once `/readyz` says so.
        const roles = this.args[this.args.indexOf("--roles") + 1];
        const dispatches = !this.args.includes("--roles") || roles.includes("dispatcher");
        return (await fetch(`${this.url}${dispatches ? "/v1/dispatch" : "/readyz"}`)).status === 200;
      } catch {
        return false;
      }
    }, 20_000).catch((e) => {
      throw new Error(`${e.message}\n${this.stderr}`);
    });
  }

  /** SIGKILL, and waits for the process to be gone. */
  async kill() {
    const p = this.proc;
    this.proc = null;
    if (!p || p.exitCode !== null) return;
    const gone = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await gone;
  }

  /** Stops the node and removes its data dir. */
  async stop() {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** An HTTP call to the node (JSON in and out). */
  async http(method, p, { token, body, key } = {}) {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (key) headers["x-api-key"] = key;
    const resp = await fetch(this.url + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await resp.text();
    return { status: resp.status, body: text ? JSON.parse(text) : null, headers: resp.headers };
  }

  /** Registers `name` and logs in: `{ token, user_id }`. */
  async user(name) {
    const r = await this.http("POST", "/v1/users", { body: { username: name, password: "secret-pass" } });
    if (r.status !== 201) throw new Error(`register ${name}: ${JSON.stringify(r.body)}`);
    const t = await this.http("POST", "/v1/sessions", { body: { username: name, password: "secret-pass" } });
    return { token: t.body.token, user_id: t.body.user_id };
  }

  /** Creates a public room: its id. */
  async room(token, name = "lobby") {
    const r = await this.http("POST", "/v1/rooms", { token, body: { name, visibility: "public" } });
    return r.body.room_id;
  }

  /** Publishes `{text}` into a room over HTTP: the answer. */
  async say(token, roomId, text, clientMsgId) {
    const r = await this.http("POST", `/v1/rooms/${roomId}/messages`, { token, body: { body: { text }, client_msg_id: clientMsgId } });
    if (r.status !== 201) throw new Error(`publish: ${JSON.stringify(r.body)}`);
    return r.body;
  }
}

/**
 * A TCP proxy on a free port in front of `target` (a port). Modes: `refuseUpgrades` answers
 * 403 to any request asking for a WebSocket upgrade; `mute()` stops forwarding server bytes to
 * clients; `cut()` ends every connection; `dropFrame(pred)` drops server WebSocket text frames
 * whose JSON matches `pred` (after the 101 answer, frames are parsed: the server sends them
 * unmasked and uncompressed).
 */
export class Proxy {
  static async start(target, { refuseUpgrades = false } = {}) {
    const p = new Proxy();
    p.target = target;
    p.refuseUpgrades = refuseUpgrades;
    p.refused = 0;
    p.accepted = 0;
    p.muted = false;
    p.drop = null;
    p.dropped = 0;
    p.sockets = new Set();
    p.port = await freePort();
    p.server = net.createServer((c) => p.handle(c));
    await new Promise((r) => p.server.listen(p.port, "127.0.0.1", r));
    return p;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  handle(client) {
    this.accepted += 1;
    this.sockets.add(client);
    client.once("close", () => this.sockets.delete(client));
    client.once("data", (first) => {
      const head = first.toString("latin1");
      const upgrade = /\r\nupgrade:\s*websocket/i.test(head);
      if (upgrade && this.refuseUpgrades) {
        this.refused += 1;
        client.end("HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 9\r\nconnection: close\r\n\r\nno upgrades");
        return;
      }
      const server = net.connect(this.target, "127.0.0.1");
      this.sockets.add(server);
      server.once("close", () => {
        this.sockets.delete(server);
        client.destroy();
      });
      client.once("close", () => server.destroy());
      server.on("error", () => client.destroy());
      client.on("error", () => server.destroy());
      server.write(first);
      client.on("data", (d) => server.write(d));
      let pending = Buffer.alloc(0);
      let framing = false;
      server.on("data", (d) => {
        if (this.muted) return;
        if (!upgrade) {
          client.write(d);
          return;
        }
        pending = Buffer.concat([pending, d]);
        if (!framing) {
          const end = pending.indexOf("\r\n\r\n");
          if (end < 0) return;
          client.write(pending.subarray(0, end + 4));
          pending = pending.subarray(end + 4);
          framing = true;
        }
        for (;;) {
          const f = parseFrame(pending);
          if (!f) break;
          const raw = pending.subarray(0, f.size);
          pending = pending.subarray(f.size);
          let dropIt = false;
          if (f.opcode === 1) {
            try {
              dropIt = this.drop?.(JSON.parse(f.payload.toString("utf8")));
            } catch {
              dropIt = false;
            }
          }
          if (dropIt) this.dropped += 1;
          else client.write(raw);
        }
      });
    });
  }

  mute() {
    this.muted = true;
  }

  unmute() {
    this.muted = false;
  }

  /** Ends every open connection. */
  cut() {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  async stop() {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}

/** One unmasked WebSocket frame at the start of `b`: `{ opcode, payload, size }`, or null if incomplete. */
function parseFrame(b) {
  if (b.length < 2) return null;
  const opcode = b[0] & 0x0f;
  let len = b[1] & 0x7f;
  let off = 2;
  if (len === 126) {
    if (b.length < 4) return null;
    len = b.readUInt16BE(2);
    off = 4;
  } else if (len === 127) {
    if (b.length < 10) return null;
    len = Number(b.readBigUInt64BE(2));
    off = 10;
  }
  if (b[1] & 0x80) off += 4;
  if (b.length < off + len) return null;
  return { opcode, payload: b.subarray(off, off + len), size: off + len };
}

/** Collects a client's `message` events per conversation. */
export function collect(client) {
  const got = [];
  client.on("message", (m) => got.push(m));
  return {
    all: got,
    seqs: (conv) => got.filter((m) => m.conv === conv).map((m) => m.seq),
    texts: (conv) => got.filter((m) => m.conv === conv).map((m) => m.body?.text),
  };
}

/** A node that advertises a {@link Proxy} in front of it as its public URL, so that every connection a client makes goes through the proxy. */
export async function nodeBehindProxy(proxyOptions = {}) {
  const port = await freePort();
  const proxy = await Proxy.start(port, proxyOptions);
  const node = new Node({ publicUrl: proxy.url });
  node.port = port;
  await node.start();
  return {
    node,
    proxy,
    async stop() {
      await node.stop();
      await proxy.stop();
    },
  };
}

/** Registers alice on `node` and makes her a public room: `{ alice, room, conv }`. */
export async function aliceAndRoom(node) {
  const alice = await node.user("alice");
  const room = await node.room(alice.token);
  return { alice, room, conv: `room:${room}` };
}

/** A real redis-server on a free port, without persistence (for cluster-mode nodes). */
export class Redis {
  static async start() {
    const r = new Redis();
    r.port = await freePort();
    r.proc = spawn(process.env.REDIS_SERVER ?? "redis-server", ["--port", String(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
    await until("redis to answer PING", () => ping(r.port), 10_000);
    return r;
  }

  get url() {
    return `redis://127.0.0.1:${this.port}/`;
  }

  async stop() {
    if (this.proc.exitCode !== null) return;
    const gone = new Promise((r) => this.proc.once("exit", r));
    this.proc.kill("SIGKILL");
    await gone;
  }
}

function ping(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.setTimeout(500, () => {
      s.destroy();
      resolve(false);
    });
    s.on("error", () => resolve(false));
    s.on("connect", () => s.write("PING\r\n"));
    s.on("data", (d) => {
      s.destroy();
      resolve(d.toString().startsWith("+PONG"));
    });
  });
}
