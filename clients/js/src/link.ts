/**
 * Links: one live connection to one node, over WebSocket or long-polling, seen the same way by
 * the client: `send(frame)`, a queue of incoming frames read with `next()`, and `close()`.
 */

import { SwitchboardError, serverError } from "./errors.js";
import type { Transport, WebSocketConstructor } from "./types.js";

/** What a link hands the client. */
export type Incoming = { kind: "frame"; frame: Record<string, unknown> } | { kind: "closed"; reason: string };

/** How long a long-poll GET asks the server to hold the request (ms). */
export const POLL_WAIT_MS = 25_000;

/** One connection to one node. */
export abstract class Link {
  /** The transport in use. */
  abstract readonly transport: Transport;
  private readonly queue: Incoming[] = [];
  private waiter: ((i: Incoming) => void) | null = null;
  /** Whether the link ended (a `closed` item was queued). */
  ended = false;
  /** When something last arrived (ms, `Date.now()`). */
  lastHeard = Date.now();

  /** Sends one client frame. */
  abstract send(frame: object): void;
  /** Ends the connection politely. */
  abstract close(): void;

  /** Queues an incoming item for `next()`. */
  protected push(i: Incoming): void {
    if (this.ended) return;
    if (i.kind === "closed") this.ended = true;
    this.lastHeard = Date.now();
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      w(i);
    } else {
      this.queue.push(i);
    }
  }

  /** The next incoming item, or `null` after `timeoutMs` with nothing. */
  next(timeoutMs: number): Promise<Incoming | null> {
    const i = this.queue.shift();
    if (i) return Promise.resolve(i);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiter = null;
        resolve(null);
      }, timeoutMs);
      this.waiter = (x) => {
        clearTimeout(t);
        resolve(x);
      };
    });
  }

  /** Parses one frame's text; unreadable text is dropped (and logged by the caller's console). */
  protected frameText(text: string): void {
    let f: unknown;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    if (f && typeof f === "object" && !Array.isArray(f)) this.push({ kind: "frame", frame: f as Record<string, unknown> });
  }
}

/** The WebSocket could not be opened (refused upgrade, unreachable node): long-polling may work. */
export class OpenFailed extends Error {}

/** A WebSocket link (`endpoints.ws`). */
export class WsLink extends Link {
  readonly transport: Transport = "websocket";
  private constructor(private readonly ws: WebSocket) {
    super();
    ws.onmessage = (e: MessageEvent) => {
      const d = e.data;
      if (typeof d === "string") this.frameText(d);
      else if (d instanceof ArrayBuffer) this.frameText(new TextDecoder().decode(d));
      else if (d && typeof (d as { toString?: unknown }).toString === "function") this.frameText(String(d));
    };
    ws.onclose = (e: CloseEvent) => this.push({ kind: "closed", reason: `connection closed (${e.code})` });
    ws.onerror = () => this.push({ kind: "closed", reason: "connection error" });
  }

  /** Opens a WebSocket to `url`; fails with {@link OpenFailed} when it does not open within `timeoutMs`. */
  static open(Ws: WebSocketConstructor, url: string, timeoutMs: number): Promise<WsLink> {
    return new Promise((resolve, reject) => {
      let ws: WebSocket;
      try {
        ws = new Ws(url);
      } catch (e) {
        reject(new OpenFailed(`${url}: ${String(e)}`));
        return;
      }
      const timer = setTimeout(() => {
        fail("no open in time");
        try {
          ws.close();
        } catch {
          /* already closing */
        }
      }, timeoutMs);
      const fail = (why: string) => {
        clearTimeout(timer);
        ws.onopen = ws.onerror = ws.onclose = null;
        reject(new OpenFailed(`${url}: ${why}`));
      };
      ws.onerror = () => fail("WebSocket error");
      ws.onclose = (e: CloseEvent) => fail(`closed (${e.code}) before opening`);
      ws.onopen = () => {
        clearTimeout(timer);
        resolve(new WsLink(ws));
      };
    });
  }

  send(frame: object): void {
    if (this.ws.readyState === 1) this.ws.send(JSON.stringify(frame));
  }

  close(): void {
    try {
      this.ws.close(1000);
    } catch {
      /* already closed */
    }
    this.push({ kind: "closed", reason: "closed by the client" });
  }
}

/** Reads an HTTP error body as a {@link SwitchboardError}. */
export async function httpError(resp: Response): Promise<SwitchboardError> {
  let body: { error?: { code?: unknown; message?: unknown; poll?: unknown } } = {};
  try {
    body = await resp.json();
  } catch {
    /* not JSON */
  }
  const ra = Number(resp.headers.get("retry-after"));
  const e = body.error ?? {};
  return serverError(e.code, e.message ?? `HTTP ${resp.status}`, resp.status, Number.isFinite(ra) && ra > 0 ? ra : undefined);
}

/** A long-polling link (`endpoints.poll`): GETs collect frames, POSTs send them in order. */
export class PollLink extends Link {
  readonly transport: Transport = "long-poll";
  private after = 0;
  private outbox: object[] = [];
  private sending = false;
  private readonly abort = new AbortController();

  private constructor(
    private readonly fetchFn: typeof fetch,
    private url: string,
  ) {
    super();
    void this.pollLoop();
  }

  /** `POST {poll}` with `resume`; the session's first frame is `welcome`. */
  static async open(
    fetchFn: typeof fetch,
    poll: string,
    token: string,
    resume: object,
    timeoutMs: number,
  ): Promise<PollLink> {
    let resp: Response;
    try {
      resp = await fetchFn(poll, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify(Object.keys(resume).length ? { resume } : {}),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (e) {
      throw new OpenFailed(`${poll}: ${String(e)}`);
    }
    if (resp.status === 401) throw await httpError(resp);
    if (resp.status !== 201) {
      await resp.arrayBuffer().catch(() => undefined);
      throw new OpenFailed(`${poll}: answered ${resp.status}`);
    }
    const a = (await resp.json()) as { session?: string; poll?: string };
    const url = a.poll ?? (a.session ? `${poll.replace(/\/$/, "")}/${a.session}` : "");
    if (!url) throw new OpenFailed(`${poll}: no session in the answer`);
    return new PollLink(fetchFn, url);
  }

  private async pollLoop(): Promise<void> {
    let reason = "poll ended";
    while (!this.ended) {
      const outcome = await this.getOnce();
      if (typeof outcome === "string") {
        reason = outcome;
        break;
      }
      const { resp, frames } = outcome;
      if (resp.status === 421) {
        const e = (frames ?? {}) as { error?: { poll?: string } };
        if (e.error?.poll) {
          this.url = e.error.poll;
          continue;
        }
        reason = "poll session on another node, which is not known";
        break;
      }
      if (resp.status === 404) {
        reason = "the poll session ended";
        break;
      }
      if (resp.status !== 200) {
        reason = `poll answered ${resp.status}`;
        break;
      }
      if (frames === undefined) {
        reason = "poll answer unreadable";
        break;
      }
      this.lastHeard = Date.now();
      if (!Array.isArray(frames)) continue;
      for (const f of frames) {
        if (!f || typeof f !== "object") continue;
        const pseq = (f as { pseq?: unknown }).pseq;
        if (typeof pseq === "number") {
          if (pseq <= this.after) continue;
          this.after = pseq;
        }
        this.push({ kind: "frame", frame: f as Record<string, unknown> });
      }
    }
    this.push({ kind: "closed", reason });
  }

  /** One `GET ?after=N&wait_ms=W`: the answer and its JSON (`undefined` when unreadable), or why it failed. */
  private async getOnce(): Promise<{ resp: Response; frames: unknown } | string> {
    const l = linked(this.abort.signal, POLL_WAIT_MS + 10_000);
    try {
      const resp = await this.fetchFn(`${this.url}?after=${this.after}&wait_ms=${POLL_WAIT_MS}`, { signal: l.signal });
      const frames = await resp.json().catch(() => undefined);
      return { resp, frames };
    } catch (e) {
      return `poll failed: ${String(e)}`;
    } finally {
      l.done();
    }
  }

  send(frame: object): void {
    if (this.ended) return;
    this.outbox.push(frame);
    if (!this.sending) void this.flush();
  }

  /** POSTs what is queued, one request at a time so frames keep their order. */
  private async flush(): Promise<void> {
    this.sending = true;
    while (this.outbox.length > 0 && !this.ended) {
      const batch = this.outbox.splice(0, 64);
      const l = linked(this.abort.signal, 10_000);
      try {
        const resp = await this.fetchFn(this.url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(batch),
          signal: l.signal,
        });
        if (resp.status === 429) {
          const a = (await resp.json().catch(() => ({}))) as { accepted?: number };
          this.outbox.unshift(...batch.slice(a.accepted ?? 0));
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        // Read every answer to its end, so the HTTP connection can be reused (or closed).
        if (resp.status !== 429) await resp.arrayBuffer().catch(() => undefined);
        if (resp.status !== 202) {
          this.push({ kind: "closed", reason: `poll send answered ${resp.status}` });
          break;
        }
      } catch (e) {
        this.push({ kind: "closed", reason: `poll send failed: ${String(e)}` });
        break;
      } finally {
        l.done();
      }
    }
    this.sending = false;
  }

  close(): void {
    if (!this.ended) {
      void this.fetchFn(this.url, { method: "DELETE", signal: AbortSignal.timeout(2000) })
        .then((r) => r.arrayBuffer())
        .catch(() => undefined);
    }
    this.push({ kind: "closed", reason: "closed by the client" });
    this.abort.abort();
  }
}

/** A signal that aborts with `signal` or after `ms`; `done()` drops its timer and listener once the request is over. */
function linked(signal: AbortSignal, ms: number): { signal: AbortSignal; done: () => void } {
  const c = new AbortController();
  const t = setTimeout(() => c.abort(), ms);
  const onAbort = () => {
    clearTimeout(t);
    c.abort();
  };
  signal.addEventListener("abort", onAbort, { once: true });
  return {
    signal: c.signal,
    done: () => {
      clearTimeout(t);
      signal.removeEventListener("abort", onAbort);
    },
  };
}
