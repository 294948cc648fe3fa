/**
 * One connection round: ask the dispatcher, try the chosen node and the alternates over the
 * configured transport (WebSocket, falling back to long-polling on the same node when it
 * cannot be opened), authenticate with `resume`, and wait for `welcome`.
 */

import { SwitchboardError, serverError } from "./errors.js";
import { Link, OpenFailed, PollLink, WsLink, httpError } from "./link.js";
import type { TransportChoice, WebSocketConstructor } from "./types.js";

/** A node and its endpoints, as the dispatcher names them. */
export interface Placement {
  /** The node. */
  node_id: string;
  /** Where clients connect to it. */
  endpoints: { ws?: string | null; poll?: string | null; tcp?: string | null };
}

/** `GET /v1/dispatch`'s answer. */
export interface DispatchAnswer extends Placement {
  /** Other nodes to try when the first cannot be reached. */
  alternates?: Placement[];
  /** The dispatcher's backoff hint. */
  backoff?: { base_ms: number; max_ms: number };
}

/** The `welcome` fields the client uses. */
export interface Welcome {
  user_id: string;
  node_id: string;
  heartbeat_ms: number;
  resumed: Record<string, { recovered: boolean; from_seq: number; epoch: string }>;
}

/** What a round needs. */
export interface RoundConfig {
  url: string;
  token: string;
  transport: TransportChoice;
  timeoutMs: number;
  fetch: typeof fetch;
  WebSocket: WebSocketConstructor | undefined;
}

/** How a round ended. */
export type RoundResult =
  | { ok: true; link: Link; welcome: Welcome; hint?: DispatchAnswer["backoff"] }
  /** Every node full or draining: wait `retryAfterMs` (the dispatcher's Retry-After). */
  | { ok: false; overloaded: true; retryAfterMs: number; error: string; hint?: undefined }
  | { ok: false; overloaded: false; error: string; hint?: DispatchAnswer["backoff"] };

/** Asks the dispatcher where to connect. */
export async function dispatch(cfg: RoundConfig): Promise<DispatchAnswer | { overloaded: number } | string> {
  const url = `${cfg.url.replace(/\/$/, "")}/v1/dispatch`;
  let resp: Response;
  try {
    resp = await cfg.fetch(url, {
      headers: { authorization: `Bearer ${cfg.token}` },
      signal: AbortSignal.timeout(cfg.timeoutMs),
    });
  } catch (e) {
    return `dispatch ${url}: ${String(e)}`;
  }
  if (resp.status !== 200) await resp.arrayBuffer().catch(() => undefined);
  if (resp.status === 503) {
    const s = Number(resp.headers.get("retry-after"));
    return { overloaded: Math.min(Number.isFinite(s) && s > 0 ? s : 1, 60) * 1000 };
  }
  if (resp.status !== 200) return `dispatch ${url}: answered ${resp.status}`;
  try {
    return (await resp.json()) as DispatchAnswer;
  } catch (e) {
    return `dispatch ${url}: unreadable answer: ${String(e)}`;
  }
}

/** One round: the dispatcher, then the chosen node and the alternates in order. Throws only when reconnecting cannot help (the token was refused). */
export async function attemptRound(cfg: RoundConfig, resume: object, authId: number): Promise<RoundResult> {
  const d = await dispatch(cfg);
  if (typeof d === "string") return { ok: false, overloaded: false, error: d };
  if ("overloaded" in d) {
    return { ok: false, overloaded: true, retryAfterMs: d.overloaded, error: "dispatcher: every node is full or draining" };
  }
  const failures: string[] = [];
  for (const node of [d, ...(d.alternates ?? [])]) {
    try {
      const { link, welcome } = await connectNode(cfg, node, resume, authId);
      return { ok: true, link, welcome, hint: d.backoff };
    } catch (e) {
      if (e instanceof SwitchboardError && e.code === "unauthorized") throw e;
      failures.push(`${node.node_id}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return { ok: false, overloaded: false, error: failures.join("; ") || "no node", hint: d.backoff };
}

async function connectNode(cfg: RoundConfig, node: Placement, resume: object, authId: number): Promise<{ link: Link; welcome: Welcome }> {
  const viaPoll = async () => {
    const poll = node.endpoints.poll;
    if (!poll) throw new Error("no long-poll endpoint");
    const link = await PollLink.open(cfg.fetch, poll, cfg.token, resume, cfg.timeoutMs);
    return { link, welcome: await awaitWelcome(link, null, cfg.timeoutMs) };
  };
  const viaWs = async () => {
    const url = node.endpoints.ws;
    if (!url) throw new OpenFailed("no WebSocket endpoint");
    if (!cfg.WebSocket) throw new OpenFailed("no WebSocket constructor (pass one in the options)");
    const link = await WsLink.open(cfg.WebSocket, url, cfg.timeoutMs);
    const auth: Record<string, unknown> = { type: "auth", id: authId, token: cfg.token };
    if (Object.keys(resume).length > 0) auth.resume = resume;
    link.send(auth);
    try {
      return { link, welcome: await awaitWelcome(link, authId, cfg.timeoutMs) };
    } catch (e) {
      link.close();
      throw e;
    }
  };
  switch (cfg.transport) {
    case "long-poll":
      return viaPoll();
    case "websocket":
      return viaWs();
    default:
      try {
        return await viaWs();
      } catch (e) {
        if (!(e instanceof OpenFailed)) throw e;
        // The WebSocket did not open (a proxy that refuses upgrades, a blocked port): the
        // same node over plain HTTP requests.
        return viaPoll();
      }
  }
}

/** Reads frames until `welcome` (answering pings); later frames stay queued in the link. */
async function awaitWelcome(link: Link, authId: number | null, timeoutMs: number): Promise<Welcome> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    const inc = left > 0 ? await link.next(left) : null;
    if (!inc) {
      link.close();
      throw new Error("no welcome in time");
    }
    if (inc.kind === "closed") throw new Error(inc.reason);
    const f = inc.frame;
    switch (f.type) {
      case "welcome":
        return {
          user_id: String(f.user_id),
          node_id: String(f.node_id),
          heartbeat_ms: Number(f.heartbeat_ms) || 0,
          resumed: (f.resumed as Welcome["resumed"]) ?? {},
        };
      case "ping":
        link.send({ type: "pong" });
        break;
      case "error": {
        link.close();
        const forAuth = authId === null || f.id === authId;
        if (f.code === "unauthorized" && forAuth) throw serverError(f.code, f.message);
        throw new Error(`refused before welcome: ${String(f.code)}: ${String(f.message)}`);
      }
      case "reconnect":
      case "disconnect":
        link.close();
        throw new Error(`the node ended the connection before welcome: ${String(f.reason)}`);
      default:
        break;
    }
  }
}

export { httpError };
