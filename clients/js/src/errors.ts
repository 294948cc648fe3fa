/**
 * Typed errors. Every failure the SDK reports is a {@link SwitchboardError} whose `code` is
 * either one of the server's codes (the protocol's error table) or one of the client's own.
 */

/** Error codes the server sends (docs/PROTOCOL.md section 3). */
export type ServerErrorCode =
  | "bad_request"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "username_taken"
  | "not_member"
  | "too_large"
  | "rate_limited"
  | "overloaded"
  | "wrong_node"
  | "unavailable"
  | "internal";

/** Error codes made by the client itself. */
export type ClientErrorCode =
  /** No answer within the request timeout (a publish may then be stored or not: retry it with the same `clientMsgId`). */
  | "timeout"
  /** The client was closed, or the server ended the session for good. */
  | "closed"
  /** The connection dropped before the answer of a request that is not safe to resend (history, presence). */
  | "disconnected"
  /** No node could be reached before `connect` gave up. */
  | "unreachable"
  /** The server answered something this client does not understand. */
  | "protocol"
  /** A bad option (an empty token, a dispatcher URL that is not http(s)). */
  | "config";

/** Every code a {@link SwitchboardError} can carry. */
export type ErrorCode = ServerErrorCode | ClientErrorCode;

/** A failure, with a code to program against and a message for people. */
export class SwitchboardError extends Error {
  /** The server's or the client's code. */
  readonly code: ErrorCode;
  /** The HTTP status, for errors answered over HTTP. */
  readonly status: number | undefined;
  /** Seconds to wait before retrying, from `Retry-After` (429 and 503 answers). */
  readonly retryAfter: number | undefined;

  constructor(code: ErrorCode, message: string, status?: number, retryAfter?: number) {
    super(message);
    this.name = "SwitchboardError";
    this.code = code;
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

const SERVER_CODES = new Set<string>([
  "bad_request", "unauthorized", "forbidden", "not_found", "username_taken", "not_member",
  "too_large", "rate_limited", "overloaded", "wrong_node", "unavailable", "internal",
]);

/** The error an `error` frame or an HTTP error body stands for (unknown codes become `protocol`). */
export function serverError(code: unknown, message: unknown, status?: number, retryAfter?: number): SwitchboardError {
  const c = typeof code === "string" && SERVER_CODES.has(code) ? (code as ServerErrorCode) : "protocol";
  return new SwitchboardError(c, typeof message === "string" ? message : String(code), status, retryAfter);
}
