/**
 * The HTTP API (docs/PROTOCOL.md section 4) as typed calls: accounts and sessions, users,
 * rooms and members, history, presence and direct messages. Every failure is a
 * {@link SwitchboardError} with the server's code and the HTTP status.
 */

import { SwitchboardError } from "./errors.js";
import { httpError } from "./link.js";
import type { Message, PresenceEntry, Receipt } from "./types.js";

/** A room object. */
export interface Room {
  room_id: string;
  name: string;
  visibility: "public" | "private";
  owner: string;
  created_at: number;
}

/** A user's id and name (`null` for users made by the server API). */
export interface User {
  user_id: string;
  username: string | null;
}

/** A login token. */
export interface Token {
  token: string;
  user_id: string;
  expires_at: number;
}

/** History paging: `after` / `before` a seq, `limit` (50 by default, at most 500). */
export interface Page {
  after?: number;
  before?: number;
  limit?: number;
}

/** HTTP calls to one node (any node with the api role). */
export class Api {
  private readonly base: string;
  private readonly fetchFn: typeof fetch;
  /** The bearer token sent with every call that needs one (set by {@link Api.login}). */
  token: string | null;

  /** `base` is the node's URL, e.g. `http://127.0.0.1:7700` (or `""` for the page's own origin in a browser). */
  constructor(base: string, options: { token?: string; fetch?: typeof fetch } = {}) {
    this.base = base.replace(/\/$/, "");
    this.fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.token = options.token ?? null;
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    let resp: Response;
    try {
      resp = await this.fetchFn(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new SwitchboardError("unreachable", `${method} ${path}: ${String(e)}`);
    }
    if (!resp.ok) throw await httpError(resp);
    if (resp.status === 204) return undefined as T;
    return (await resp.json()) as T;
  }

  /** `POST /v1/users`: registers a user. */
  register(username: string, password: string): Promise<User> {
    return this.call("POST", "/v1/users", { username, password });
  }

  /** `POST /v1/sessions`: logs in, and keeps the token for the next calls. */
  async login(username: string, password: string): Promise<Token> {
    const t = await this.call<Token>("POST", "/v1/sessions", { username, password });
    this.token = t.token;
    return t;
  }

  /** `DELETE /v1/sessions/current`: revokes the token. */
  async logout(): Promise<void> {
    await this.call("DELETE", "/v1/sessions/current");
    this.token = null;
  }

  /** `GET /v1/me`. */
  me(): Promise<User> {
    return this.call("GET", "/v1/me");
  }

  /** `GET /v1/users/{id}`. */
  user(userId: string): Promise<User> {
    return this.call("GET", `/v1/users/${encodeURIComponent(userId)}`);
  }

  /** `GET /v1/users?username=`: a user by name (`not_found` when none). */
  findUser(username: string): Promise<User> {
    return this.call("GET", `/v1/users?username=${encodeURIComponent(username)}`);
  }

  /** `GET /v1/rooms`: every public room and the private rooms I am in, oldest first. */
  async rooms(): Promise<Room[]> {
    return (await this.call<{ rooms: Room[] }>("GET", "/v1/rooms")).rooms;
  }

  /** `POST /v1/rooms`: creates a room (I become its owner and first member). */
  createRoom(name: string, visibility: "public" | "private" = "public"): Promise<Room> {
    return this.call("POST", "/v1/rooms", { name, visibility });
  }

  /** `PUT /v1/rooms/{id}/members/{user}`: joins (or, as the owner, adds someone). */
  async join(roomId: string, userId: string): Promise<void> {
    await this.call("PUT", `/v1/rooms/${encodeURIComponent(roomId)}/members/${encodeURIComponent(userId)}`);
  }

  /** `DELETE /v1/rooms/{id}/members/{user}`: leaves (or, as the owner, removes someone). */
  async leave(roomId: string, userId: string): Promise<void> {
    await this.call("DELETE", `/v1/rooms/${encodeURIComponent(roomId)}/members/${encodeURIComponent(userId)}`);
  }

  /** `GET /v1/rooms/{id}/members`: member ids in join order. */
  async members(roomId: string): Promise<string[]> {
    return (await this.call<{ members: string[] }>("GET", `/v1/rooms/${encodeURIComponent(roomId)}/members`)).members;
  }

  /** `POST /v1/rooms/{id}/messages`. */
  publish(roomId: string, body: unknown, clientMsgId?: string): Promise<Omit<Receipt, "client_msg_id">> {
    return this.call("POST", `/v1/rooms/${encodeURIComponent(roomId)}/messages`, { body, client_msg_id: clientMsgId });
  }

  /** `POST /v1/users/{id}/messages`: a direct message. */
  sendDirect(userId: string, body: unknown, clientMsgId?: string): Promise<Omit<Receipt, "client_msg_id">> {
    return this.call("POST", `/v1/users/${encodeURIComponent(userId)}/messages`, { body, client_msg_id: clientMsgId });
  }

  /** `GET /v1/rooms/{id}/messages`: one page of history, ascending. */
  async roomMessages(roomId: string, page: Page = {}): Promise<Message[]> {
    return (await this.call<{ messages: Message[] }>("GET", `/v1/rooms/${encodeURIComponent(roomId)}/messages${query(page)}`)).messages;
  }

  /** `GET /v1/users/me/messages`: one page of my own stream. */
  async myMessages(page: Page = {}): Promise<Message[]> {
    return (await this.call<{ messages: Message[] }>("GET", `/v1/users/me/messages${query(page)}`)).messages;
  }

  /** `GET /v1/rooms/{id}/presence`: users subscribed to the room now. */
  async roomPresence(roomId: string): Promise<PresenceEntry[]> {
    return (await this.call<{ users: PresenceEntry[] }>("GET", `/v1/rooms/${encodeURIComponent(roomId)}/presence`)).users;
  }

  /** `GET /v1/presence/users?ids=`: who of these users is online. */
  async userPresence(ids: string[]): Promise<Record<string, { online: boolean; connections?: number }>> {
    const q = ids.map(encodeURIComponent).join(",");
    return (await this.call<{ users: Record<string, { online: boolean; connections?: number }> }>("GET", `/v1/presence/users?ids=${q}`)).users;
  }
}

function query(p: Page): string {
  const parts: string[] = [];
  if (p.after !== undefined) parts.push(`after=${p.after}`);
  if (p.before !== undefined) parts.push(`before=${p.before}`);
  if (p.limit !== undefined) parts.push(`limit=${p.limit}`);
  return parts.length ? `?${parts.join("&")}` : "";
}
