/**
 * The client: {@link Client.connect} and the requests an application makes (subscribe,
 * publish, history, presence, direct messages). The connection itself (dispatch, reconnect,
 * resume, ordering) is {@link Connection}'s.
 */

import { Connection, newClientMsgId, toMessage, type Frame, type Req } from "./connection.js";
import { SwitchboardError } from "./errors.js";
import type { ClientOptions, Message, PresenceEntry, Receipt, Subscribed } from "./types.js";

export { newClientMsgId };

/**
 * A connection to Switchboard that keeps itself alive. Make one with {@link Client.connect};
 * listen with `on("message", ...)` and the other {@link ClientEvents}.
 */
export class Client extends Connection {
  private constructor(o: ClientOptions) {
    super(o);
  }

  /**
   * Dispatches, connects and authenticates; resolves once the first `welcome` arrived and the
   * own stream (`user:<id>`) is tracked. Rejects with code `unauthorized` when the token is
   * refused, `unreachable` when no node answered within 3x the request timeout, `config` for
   * bad options.
   */
  static async connect(options: ClientOptions): Promise<Client> {
    if (!/^https?:\/\//.test(options.url ?? "")) {
      throw new SwitchboardError("config", `the url must be an http(s):// URL, not ${JSON.stringify(options.url)}`);
    }
    if (!options.token) throw new SwitchboardError("config", "the token is empty");
    if (!(options.fetch ?? globalThis.fetch)) throw new SwitchboardError("config", "no fetch function");
    const c = new Client(options);
    const ready = new Promise<void>((resolve, reject) => (c.ready = { resolve, reject }));
    // A refusal that comes after `connect` gave up is no one's to handle.
    ready.catch(() => {});
    c.stopped = c.run();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new SwitchboardError("unreachable", c.lastError || "no welcome in time")),
        3 * c.requestTimeoutMs,
      );
    });
    try {
      await Promise.race([ready, timeout]);
      return c;
    } catch (e) {
      await c.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Subscribes to `conv`; its messages then arrive as `message` events from `head_seq + 1` on, and it is resumed after every reconnect. */
  async subscribe(conv: string): Promise<Subscribed> {
    const f = await this.request({ type: "subscribe", conv }, this.requestTimeoutMs);
    return { conv: String(f.conv), head_seq: Number(f.head_seq), epoch: String(f.epoch) };
  }

  /** Ends the subscription to `conv` and forgets its position. */
  async unsubscribe(conv: string): Promise<void> {
    await this.request({ type: "unsubscribe", conv }, this.requestTimeoutMs);
  }

  /**
   * Publishes `body` to `conv` (a room, or `user:<id>` for a direct message). Sent again with
   * the same `clientMsgId` after a reconnect, so it is stored once. Gives up after 3x the
   * request timeout (`timeout`: publish again with the same id to settle it).
   */
  async publish(conv: string, body: unknown, clientMsgId: string = newClientMsgId()): Promise<Receipt> {
    const f = await this.request({ type: "publish", conv, body, client_msg_id: clientMsgId }, 3 * this.requestTimeoutMs);
    return { conv: String(f.conv), seq: Number(f.seq), message_id: String(f.message_id), ts: Number(f.ts), client_msg_id: clientMsgId };
  }

  /**
   * Stored messages of `conv`, ascending: `after` those with a larger seq, `before` those just
   * below it, neither the latest; `limit` 50 by default (at most 500). Pages the server cut by
   * its byte cap are continued, so the answer has `limit` messages unless history has fewer.
   */
  async history(conv: string, q: { after?: number; before?: number; limit?: number } = {}): Promise<Message[]> {
    const want = Math.min(500, Math.max(1, q.limit ?? 50));
    const forward = q.after !== undefined;
    let { after, before } = q;
    let got: Message[] = [];
    for (;;) {
      const req: Req = { type: "history", conv, limit: want - got.length };
      if (after !== undefined) req.after = after;
      if (before !== undefined) req.before = before;
      const f = await this.request(req, this.requestTimeoutMs);
      const page = ((f.messages as Frame[]) ?? []).map(toMessage);
      got = forward ? got.concat(page) : page.concat(got);
      if (f.more === true && page.length > 0 && got.length < want) {
        if (forward) after = page[page.length - 1]!.seq;
        else before = page[0]!.seq;
        continue;
      }
      return got;
    }
  }

  /** Who is subscribed to a room (or, for `user:<own id>`, the own live connections). */
  async presence(conv: string): Promise<PresenceEntry[]> {
    const f = await this.request({ type: "presence", conv }, this.requestTimeoutMs);
    return (f.users as PresenceEntry[]) ?? [];
  }

  /** Sends a direct message to `userId` (a publish to `user:<userId>`). */
  sendDirect(userId: string, body: unknown, clientMsgId?: string): Promise<Receipt> {
    return this.publish(`user:${userId}`, body, clientMsgId);
  }

}
