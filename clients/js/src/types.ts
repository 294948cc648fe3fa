/** The SDK's public types: messages, answers, events and options. */

/** One stored message of a conversation; `(conv, seq)` identifies it. Field names are the wire's. */
export interface Message {
  /** `room:<room_id>` or `user:<user_id>`. */
  conv: string;
  /** Position in `conv`: 1, 2, 3 ... */
  seq: number;
  /** Server-made id (both copies of a direct message share it). */
  message_id: string;
  /** The sender; `null` for server-API publishes. */
  from: string | null;
  /** The recipient of a direct message. */
  to: string | null;
  /** Storage time, ms since the Unix epoch (informational: `seq` is the order). */
  ts: number;
  /** The sender's idempotency key, if it gave one. */
  client_msg_id: string | null;
  /** The payload, any JSON value. */
  body: unknown;
}

/** The answer to a publish. */
export interface Receipt {
  /** Where it was stored (`user:<to>` for a direct message). */
  conv: string;
  /** Its seq there. */
  seq: number;
  /** Its id. */
  message_id: string;
  /** Storage time (ms). */
  ts: number;
  /** The idempotency key sent with it. */
  client_msg_id: string;
}

/** The answer to a subscribe. */
export interface Subscribed {
  /** The conversation. */
  conv: string;
  /** Its latest seq when the subscription started; later messages come as events. */
  head_seq: number;
  /** Its epoch. */
  epoch: string;
}

/** One entry of a presence answer. */
export interface PresenceEntry {
  /** The user. */
  user_id: string;
  /** Their live connections subscribed to the conversation. */
  connections: number;
}

/** The transport a connection uses. */
export type Transport = "websocket" | "long-poll";

/** Which transport to speak: `auto` is WebSocket, falling back to long-polling on the same node. */
export type TransportChoice = "auto" | "websocket" | "long-poll";

/** The connection state, as {@link ClientEvents.state} reports it. */
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "closed";

/** Every event a client emits, with its payload. */
export interface ClientEvents {
  /** A message of a subscribed conversation: each `(conv, seq)` once, in seq order. */
  message: Message;
  /** A connection is up (after every `welcome`). */
  connected: { nodeId: string; transport: Transport };
  /** The connection ended; the client reconnects by itself. */
  disconnected: { reason: string };
  /** A conversation was resumed after a reconnect; `recovered: false` means messages before `fromSeq` are gone. */
  resumed: { conv: string; recovered: boolean; fromSeq: number };
  /** The server ended a subscription (e.g. `not_member`); it is no longer tracked. */
  unsubscribed: { conv: string; reason: string };
  /** The client stopped for good: `close()` (reason `closed`) or the server ended the session (`logged_out`, `kicked`, `auth_expired`, `unauthorized`). */
  closed: { reason: string };
  /** The connection state changed. */
  state: ConnectionState;
}

/** A WebSocket constructor: the browser's, Node's global one, or the `ws` package's. */
export type WebSocketConstructor = new (url: string) => WebSocket;

/** How to reach the server and how to behave. */
export interface ClientOptions {
  /** The dispatcher's base URL, e.g. `http://127.0.0.1:7700`. */
  url: string;
  /** A bearer token (`POST /v1/sessions`, or the server API). */
  token: string;
  /** Transport (default `auto`). */
  transport?: TransportChoice;
  /** First backoff step (default 250 ms; replaced by the dispatcher's hint). */
  backoffBaseMs?: number;
  /** Largest backoff step (default 10 s; replaced by the dispatcher's hint). */
  backoffMaxMs?: number;
  /** How long a request waits for its answer (default 10 s); a publish waits 3x this across reconnects, and `connect` 3x for the first welcome. */
  requestTimeoutMs?: number;
  /** The WebSocket constructor (default: `globalThis.WebSocket`; in Node 20 pass `ws`'s). */
  WebSocket?: WebSocketConstructor;
  /** The fetch function (default: `globalThis.fetch`). */
  fetch?: typeof fetch;
  /** Random numbers in [0, 1) for jitter (default `Math.random`). */
  random?: () => number;
}
