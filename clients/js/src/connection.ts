/**
 * The connection loop under {@link Client}: dispatch, connect, authenticate with resume, route
 * replies to waiting requests, feed messages through the tracker, and start over (with
 * full-jitter backoff) on any failure. Requests made while no connection is up wait for the
 * next one; publishes, subscribes and unsubscribes in flight when a connection drops are sent
 * again on the next (a publish with the same `client_msg_id`, so the server stores it once).
 */

import { Backoff, jitter } from "./backoff.js";
import { attemptRound, type RoundConfig, type Welcome } from "./connect.js";
import { Emitter } from "./emitter.js";
import { SwitchboardError, serverError } from "./errors.js";
import type { Link } from "./link.js";
import { type Action, FILL_PAGE, Tracker } from "./tracker.js";
import type { ClientEvents, ClientOptions, ConnectionState, Message, Transport } from "./types.js";

/** Disconnect reasons after which reconnecting cannot help. */
const FINAL_REASONS = new Set(["logged_out", "kicked", "auth_expired"]);

/**
 * Error codes that say the server could not serve a request right now (storage away,
 * overloaded), rather than that it never will.
 */
const TRANSIENT = new Set(["unavailable", "internal", "overloaded", "rate_limited"]);

/** A request to the server, as its frame without `id`. */
export type Req =
  | { type: "subscribe"; conv: string }
  | { type: "unsubscribe"; conv: string }
  | { type: "publish"; conv: string; body: unknown; client_msg_id: string }
  | { type: "history"; conv: string; after?: number; before?: number; limit?: number }
  | { type: "presence"; conv: string };

/** A frame as parsed JSON. */
export type Frame = Record<string, unknown>;

interface Pending {
  req: Req;
  /** Who waits: the application, the first connection's own-stream subscribe, a gap fill, or nobody. */
  waiter: "app" | "setup" | "fill" | "nobody";
  resolve?: (f: Frame) => void;
  reject?: (e: SwitchboardError) => void;
  /** Answered, failed or timed out: never send it again. */
  done: boolean;
}

type After = { kind: "reconnect"; delay: number; reason: string } | { kind: "final"; reason: string } | { kind: "closed" };

/** A fresh idempotency key (works in insecure browser contexts too, unlike `randomUUID`). */
export function newClientMsgId(): string {
  const b = new Uint8Array(12);
  globalThis.crypto.getRandomValues(b);
  return "c_" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** A message as the wire has it (with defaults for fields an older server may leave out). */
export function toMessage(f: Frame): Message {
  return {
    conv: String(f.conv),
    seq: Number(f.seq),
    message_id: String(f.message_id ?? ""),
    from: (f.from as string | null) ?? null,
    to: (f.to as string | null) ?? null,
    ts: Number(f.ts ?? 0),
    client_msg_id: (f.client_msg_id as string | null) ?? null,
    body: f.body ?? null,
  };
}

/** The state and the loop of one self-healing connection; {@link Client} adds the requests. */
export abstract class Connection extends Emitter<ClientEvents> {
  protected readonly cfg: RoundConfig;
  protected readonly requestTimeoutMs: number;
  protected readonly random: () => number;
  protected readonly backoff: Backoff;
  protected readonly tracker = new Tracker();
  protected link: Link | null = null;
  protected nextId = 0;
  protected queue: Pending[] = [];
  protected inflight = new Map<number, Pending>();
  protected ownWanted = true;
  protected ownConv: string | null = null;
  protected closing = false;
  protected wake: (() => void) | null = null;
  protected ready: { resolve: () => void; reject: (e: SwitchboardError) => void } | null = null;
  protected stopped: Promise<void> = Promise.resolve();
  protected lastError = "";
  protected _state: ConnectionState = "connecting";
  protected _nodeId: string | null = null;
  protected _userId: string | null = null;
  protected _transport: Transport | null = null;

  protected constructor(o: ClientOptions) {
    super();
    const fetchFn = o.fetch ?? globalThis.fetch?.bind(globalThis);
    this.cfg = {
      url: o.url,
      token: o.token,
      transport: o.transport ?? "auto",
      timeoutMs: o.requestTimeoutMs ?? 10_000,
      fetch: fetchFn,
      WebSocket: o.WebSocket ?? (globalThis as { WebSocket?: ClientOptions["WebSocket"] }).WebSocket,
    };
    this.requestTimeoutMs = o.requestTimeoutMs ?? 10_000;
    this.random = o.random ?? Math.random;
    this.backoff = new Backoff(o.backoffBaseMs ?? 250, o.backoffMaxMs ?? 10_000, this.random);
  }

  /** The connection state: `connecting`, `connected`, `reconnecting` or `closed`. */
  get state(): ConnectionState {
    return this._state;
  }
  /** The node connected to (`null` while reconnecting). */
  get nodeId(): string | null {
    return this._nodeId;
  }
  /** The authenticated user. */
  get userId(): string | null {
    return this._userId;
  }
  /** The transport of the current connection. */
  get transport(): Transport | null {
    return this._transport;
  }
  /** `[epoch, last seq delivered]` of a subscribed conversation. */
  position(conv: string): [string, number] | undefined {
    return this.tracker.position(conv);
  }

  /** Closes the connection, fails pending requests with `closed`, and emits `closed`. */
  async close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      this.link?.close();
      this.wake?.();
    }
    await this.stopped;
  }

  // ---- the connection loop ----

  private setState(s: ConnectionState): void {
    if (this._state === s) return;
    this._state = s;
    this.emit("state", s);
  }

  protected async run(): Promise<void> {
    let delay = 0;
    let endReason = "closed";
    for (;;) {
      if (delay > 0) await this.sleep(delay);
      if (this.closing) break;
      let est: { link: Link; welcome: Welcome; authId: number } | null;
      try {
        est = await this.establish();
      } catch (e) {
        const err = e instanceof SwitchboardError ? e : new SwitchboardError("protocol", String(e));
        if (this.ready) {
          this.ready.reject(err);
          this.ready = null;
        }
        endReason = err.code;
        break;
      }
      if (!est) break;
      this.backoff.reset();
      const after = await this.live(est.link, est.welcome, est.authId);
      est.link.close();
      this.dropped();
      if (after.kind === "reconnect") {
        this.setState("reconnecting");
        this.emit("disconnected", { reason: after.reason });
        delay = after.delay;
      } else {
        if (after.kind === "final") endReason = after.reason;
        break;
      }
    }
    this.closing = true;
    for (const p of [...this.queue, ...this.inflight.values()]) this.fail(p, new SwitchboardError("closed", `the client stopped: ${endReason}`));
    this.queue = [];
    this.inflight.clear();
    this._nodeId = null;
    this.setState("closed");
    this.emit("closed", { reason: endReason });
  }

  /** Sleeps `ms`, or less when the client is closed meanwhile. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    });
  }

  /** Rounds separated by backoff until a node welcomes us; `null` when closed meanwhile. */
  private async establish(): Promise<{ link: Link; welcome: Welcome; authId: number } | null> {
    while (!this.closing) {
      const authId = ++this.nextId;
      const r = await attemptRound(this.cfg, this.tracker.resume(), authId);
      if (r.hint) this.backoff.hint(r.hint.base_ms, r.hint.max_ms);
      if (r.ok) {
        if (this.closing) {
          r.link.close();
          return null;
        }
        return { link: r.link, welcome: r.welcome, authId };
      }
      this.lastError = r.error;
      let delay = this.backoff.nextDelay();
      if (r.overloaded) delay = r.retryAfterMs + jitter(this.backoff.base, this.random);
      await this.sleep(delay);
    }
    return null;
  }

  /** Serves one connection until it ends. */
  private async live(link: Link, welcome: Welcome, authId: number): Promise<After> {
    this.link = link;
    const own = `user:${welcome.user_id}`;
    this.ownConv = own;
    this._nodeId = welcome.node_id;
    this._userId = welcome.user_id;
    this._transport = link.transport;
    this.lastError = "";
    this.setState("connected");
    this.emit("connected", { nodeId: welcome.node_id, transport: link.transport });
    for (const [conv, r] of Object.entries(welcome.resumed)) {
      this.tracker.onResumed(conv, r.recovered, r.from_seq, r.epoch);
      this.emit("resumed", { conv, recovered: r.recovered, fromSeq: r.from_seq });
    }
    if (this.ownWanted && !this.tracker.isTracked(own)) {
      this.send({ req: { type: "subscribe", conv: own }, waiter: this.ready ? "setup" : "nobody", done: false });
    } else if (this.ready) {
      this.ready.resolve();
      this.ready = null;
    }
    const waiting = this.queue;
    this.queue = [];
    for (const p of waiting) this.send(p);

    const hb = link.transport === "websocket" ? welcome.heartbeat_ms : 0;
    for (;;) {
      if (this.closing) return { kind: "closed" };
      const inc = await link.next(hb > 0 ? Math.max(50, Math.floor(hb / 2)) : 60_000);
      if (this.closing) return { kind: "closed" };
      if (!inc) {
        // Browsers answer the server's protocol pings without telling scripts, so silence is
        // measured on frames: ask with a ping frame, give up after 2.5 heartbeats.
        const quiet = Date.now() - link.lastHeard;
        if (hb > 0 && quiet > 2.5 * hb) return this.reconnect("heartbeat timeout: the server went silent");
        if (hb > 0 && quiet > hb) link.send({ type: "ping" });
        continue;
      }
      if (inc.kind === "closed") return this.reconnect(inc.reason);
      const after = this.onFrame(inc.frame, authId);
      if (after) return after;
    }
  }

  private reconnect(reason: string): After {
    return { kind: "reconnect", delay: this.backoff.nextDelay(), reason };
  }

  /** One server frame; an {@link After} when the connection must end. */
  private onFrame(f: Frame, authId: number): After | null {
    switch (f.type) {
      case "message":
        this.apply(this.tracker.onMessage(toMessage(f)));
        return null;
      case "ping":
        this.link?.send({ type: "pong" });
        return null;
      case "reconnect":
        return { kind: "reconnect", delay: Number(f.delay_ms) || 0, reason: String(f.reason ?? "reconnect") };
      case "disconnect": {
        const reason = String(f.reason);
        return FINAL_REASONS.has(reason) ? { kind: "final", reason } : this.reconnect(reason);
      }
      case "unsubscribed":
        if (f.id === null || f.id === undefined) {
          this.forget(String(f.conv), String(f.reason ?? "unsubscribed"));
          return null;
        }
        break;
      default:
        break;
    }
    const id = typeof f.id === "number" ? f.id : null;
    const p = id !== null ? this.inflight.get(id) : undefined;
    if (p && id !== null) {
      this.inflight.delete(id);
      const resync = this.onReply(p, f);
      if (resync) return this.reconnect(resync);
    } else if (f.type === "error" && (id === authId || (id === null && typeof f.conv === "string"))) {
      // A resumed conversation that could not be subscribed again: answering the `auth` frame,
      // or, on long-polling (whose session is opened with the resume, no `auth` frame), without
      // an id but with its `conv`. Servers before the `conv` field only named it at the start
      // of the message.
      const conv = typeof f.conv === "string" ? f.conv : String(f.message ?? "").split(": ")[0];
      const code = String(f.code);
      if (conv && TRANSIENT.has(code)) {
        // The server could not reach its storage (say, Redis restarting): the conversation is
        // still ours. Forgetting it would lose every later message; resume it again on a new
        // connection after the backoff.
        return this.reconnect(`resume of ${conv} failed: ${code}`);
      }
      if (conv) this.forget(conv, code);
    }
    return null;
  }

  private forget(conv: string, reason: string): void {
    if (this.tracker.isTracked(conv)) {
      this.tracker.remove(conv);
      this.emit("unsubscribed", { conv, reason });
    }
  }

  /** A reply to a request; a reason when the connection must end so that the resume fetches what this one could not. */
  private onReply(p: Pending, f: Frame): string | null {
    const err = f.type === "error" ? serverError(f.code, f.message) : null;
    const r = p.req;
    let resync: string | null = null;
    if (!err && r.type === "subscribe" && f.type === "subscribed") {
      this.tracker.onSubscribed(r.conv, Number(f.head_seq), String(f.epoch));
      if (r.conv === this.ownConv) this.ownWanted = true;
    } else if (!err && r.type === "unsubscribe" && p.waiter === "app") {
      this.tracker.remove(r.conv);
      if (r.conv === this.ownConv) this.ownWanted = false;
    } else if (p.waiter === "fill" && r.type === "history") {
      if (f.type === "error" && TRANSIENT.has(String(f.code))) {
        // History is there but could not be read just now (say, Redis restarting): accepting
        // the jump would lose the gap for good. A new connection resumes from the last message
        // delivered, and the server replays the gap.
        resync = `gap fill of ${r.conv} failed: ${String(f.code)}`;
      } else {
        this.apply(
          err || f.type !== "history"
            ? this.tracker.onFillFailed(r.conv)
            : this.tracker.onFill(r.conv, ((f.messages as Frame[]) ?? []).map(toMessage), f.more === true),
        );
      }
    }
    if (p.waiter === "app") {
      p.done = true;
      if (err) p.reject?.(err);
      else p.resolve?.(f);
    } else if (p.waiter === "setup" && this.ready) {
      this.ready.resolve();
      this.ready = null;
    }
    return resync;
  }

  private apply(actions: Action[]): void {
    for (const a of actions) {
      if (a.kind === "deliver") this.emit("message", a.message);
      else this.send({ req: { type: "history", conv: a.conv, after: a.after, before: a.before, limit: FILL_PAGE }, waiter: "fill", done: false });
    }
  }

  /** A request from the application: sent now when connected, else queued for the next connection. */
  protected request(req: Req, timeoutMs: number): Promise<Frame> {
    if (this.closing) return Promise.reject(new SwitchboardError("closed", "the client is closed"));
    return new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (p.done) return;
        p.done = true;
        this.queue = this.queue.filter((q) => q !== p);
        reject(new SwitchboardError("timeout", `no answer to ${req.type} within ${timeoutMs} ms`));
      }, timeoutMs);
      const p: Pending = {
        req,
        waiter: "app",
        done: false,
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      if (this.link && this._state === "connected") this.send(p);
      else this.queue.push(p);
    });
  }

  private send(p: Pending): void {
    const link = this.link;
    if (p.done || !link) return;
    // The server subscribes every connection to the own stream at auth, so a `subscribed`
    // answer for it would not be a fresh start: unsubscribe first so that `head_seq` is
    // exactly where live messages begin.
    if (p.req.type === "subscribe" && p.req.conv === this.ownConv && !this.tracker.isTracked(p.req.conv)) {
      const uid = ++this.nextId;
      link.send({ type: "unsubscribe", id: uid, conv: p.req.conv });
      this.inflight.set(uid, { req: { type: "unsubscribe", conv: p.req.conv }, waiter: "nobody", done: false });
    }
    const id = ++this.nextId;
    link.send({ ...p.req, id });
    this.inflight.set(id, p);
  }

  /** After a connection ended: held messages go, safe requests wait for the next connection, the others fail. */
  private dropped(): void {
    this.tracker.onDisconnect();
    this.link = null;
    this._nodeId = null;
    for (const p of this.inflight.values()) {
      if (p.waiter !== "app" || p.done) continue;
      if (p.req.type === "history" || p.req.type === "presence") {
        this.fail(p, new SwitchboardError("disconnected", `the connection dropped before the ${p.req.type} answer`));
      } else {
        this.queue.push(p);
      }
    }
    this.inflight.clear();
  }

  private fail(p: Pending, e: SwitchboardError): void {
    if (p.waiter !== "app" || p.done) return;
    p.done = true;
    p.reject?.(e);
  }
}

