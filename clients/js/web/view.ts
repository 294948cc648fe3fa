// The chat's DOM pieces: one conversation in the sidebar and one message in the list, built
// with text nodes only (a message is never parsed as HTML). The `data-testid` names are fixed
// (issue 15): tests outside the project drive the page by them.
import type { Message } from "../src/index.js";

/** One conversation the sidebar lists: a room, or the DMs with one user. */
export interface Conv {
  /** `room:<id>` or `dm:<user_id>`. */
  key: string;
  title: string;
  kind: "room" | "dm";
  roomId?: string;
  peer?: string;
  member: boolean;
  unread: number;
  /** Messages by seq of the stream they come from (the room, or my own stream for DMs). */
  messages: Map<number, Message>;
  /** The oldest seq loaded from history, when older ones may exist. */
  oldest: number | null;
  complete: boolean;
}

/** A `room-item` or `dm-item`: a button with the name, a "join" tag and the `unread-count`. */
export function conversationItem(c: Conv, current: boolean, onOpen: () => void): HTMLLIElement {
  const li = document.createElement("li");
  li.dataset.testid = c.kind === "room" ? "room-item" : "dm-item";
  li.dataset.key = c.key;
  const b = document.createElement("button");
  b.type = "button";
  b.className = "conv";
  if (current) b.setAttribute("aria-current", "true");
  const label = document.createElement("span");
  label.textContent = c.kind === "room" ? `# ${c.title}` : `@ ${c.title}`;
  b.append(label);
  if (c.kind === "room" && !c.member) {
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = "join";
    b.append(tag);
  }
  if (c.unread > 0) {
    const u = document.createElement("span");
    u.className = "unread";
    u.dataset.testid = "unread-count";
    u.textContent = String(c.unread);
    u.setAttribute("aria-label", `${c.unread} unread`);
    b.append(u);
  }
  b.addEventListener("click", onOpen);
  li.append(b);
  return li;
}

/** A `message-item`: the author's name, the time, and the text (or the body as JSON). */
export function messageItem(m: Message, author: string): HTMLLIElement {
  const li = document.createElement("li");
  li.dataset.testid = "message-item";
  li.dataset.seq = String(m.seq);
  const who = document.createElement("span");
  who.className = "author";
  who.textContent = author;
  const time = document.createElement("time");
  const d = new Date(m.ts);
  time.dateTime = d.toISOString();
  time.textContent = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const text = document.createElement("p");
  const body = m.body as { text?: unknown } | null;
  text.textContent = body && typeof body.text === "string" ? body.text : JSON.stringify(m.body);
  li.append(who, " ", time, text);
  return li;
}
