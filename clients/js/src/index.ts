/**
 * The TypeScript SDK for Switchboard: {@link Client} (dispatch, WebSocket or long-polling,
 * resume, exactly-once in-order delivery, idempotent publishes) and {@link Api} (the HTTP API:
 * accounts, rooms, members, history, presence, direct messages).
 */

export { Client, newClientMsgId } from "./client.js";
export { Api } from "./api.js";
export type { Room, User, Token } from "./api.js";
export { SwitchboardError } from "./errors.js";
export type { ErrorCode, ServerErrorCode, ClientErrorCode } from "./errors.js";
export { Backoff, jitter } from "./backoff.js";
export { Tracker, FILL_PAGE } from "./tracker.js";
export type { Action } from "./tracker.js";
export type {
  ClientEvents, ClientOptions, ConnectionState, Message, PresenceEntry, Receipt, Subscribed,
  Transport, TransportChoice, WebSocketConstructor,
} from "./types.js";
