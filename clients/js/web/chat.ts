// The web chat served at `/`: sign up or log in, rooms and direct messages, live messages over
// the SDK (which resumes after any disconnect), older history on scroll or a button, who is
// online, unread counts and the connection state. Plain DOM, no framework; every element that
// tests drive has a stable `data-testid`.
import { Api, Client, SwitchboardError } from "../src/index.js";
import type { Message, Room } from "../src/index.js";
import { type Conv, conversationItem, messageItem } from "./view.js";

const TOKEN_KEY = "switchboard.token";
const PAGE = 30;

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const api = new Api(location.origin);
let client: Client | null = null;
let me: { user_id: string; username: string | null } | null = null;

const convs = new Map<string, Conv>();
let current: string | null = null;
const names = new Map<string, string>();
let presenceTimer: ReturnType<typeof setInterval> | undefined;
let roomsTimer: ReturnType<typeof setInterval> | undefined;

function showError(e: unknown): void {
  const el = $("error");
  const text = e instanceof SwitchboardError ? `${e.message} (${e.code})` : e instanceof Error ? e.message : String(e);
  el.textContent = text;
  el.hidden = false;
}

function clearError(): void {
  $("error").hidden = true;
  $("error").textContent = "";
}

function setStatus(s: string): void {
  $("status").textContent = s;
  $("status").className = s === "connected" ? "ok" : "warn";
}

async function nameOf(userId: string | null): Promise<string> {
  if (!userId) return "server";
  const known = names.get(userId);
  if (known) return known;
  try {
    const u = await api.user(userId);
    names.set(userId, u.username ?? userId);
  } catch {
    names.set(userId, userId);
  }
  return names.get(userId)!;
}

// ---- accounts ----

async function signUp(ev: Event): Promise<void> {
  ev.preventDefault();
  clearError();
  const user = $<HTMLInputElement>("signup-username").value.trim();
  const pass = $<HTMLInputElement>("signup-password").value;
  try {
    await api.register(user, pass);
    await api.login(user, pass);
    await start();
  } catch (e) {
    showError(e);
  }
}

async function logIn(ev: Event): Promise<void> {
  ev.preventDefault();
  clearError();
  try {
    await api.login($<HTMLInputElement>("login-username").value.trim(), $<HTMLInputElement>("login-password").value);
    await start();
  } catch (e) {
    showError(e);
  }
}

async function logOut(): Promise<void> {
  try {
    await api.logout();
  } catch {
    /* the token may be gone already */
  }
  localStorage.removeItem(TOKEN_KEY);
  location.reload();
}

/** Signed in: connect the SDK, list the rooms, show the chat. */
async function start(): Promise<void> {
  localStorage.setItem(TOKEN_KEY, api.token!);
  me = await api.me();
  names.set(me.user_id, me.username ?? me.user_id);
  $("me-name").textContent = me.username ?? me.user_id;
  $("me-line").hidden = false;
  $("auth").hidden = true;
  $("chat").hidden = false;
  setStatus("reconnecting");
  client = await Client.connect({ url: location.origin, token: api.token! });
  client.on("state", (s) => setStatus(s === "connected" ? "connected" : s === "closed" ? "signed out" : "reconnecting"));
  client.on("message", (m) => void onMessage(m));
  client.on("closed", ({ reason }) => {
    if (reason !== "closed") showError(new Error(`The server ended the session: ${reason}`));
  });
  setStatus(client.state === "connected" ? "connected" : "reconnecting");
  await loadRooms();
  await loadDms();
  roomsTimer = setInterval(() => void loadRooms().catch(() => {}), 4000);
}

// ---- the sidebar ----

async function loadRooms(): Promise<void> {
  const rooms: Room[] = await api.rooms();
  const mine = await Promise.all(
    rooms.slice(0, 200).map(async (r) => {
      try {
        return (await api.members(r.room_id)).includes(me!.user_id);
      } catch {
        return false;
      }
    }),
  );
  rooms.forEach((r, i) => {
    const key = `room:${r.room_id}`;
    const c = convs.get(key);
    if (c) {
      c.member ||= mine[i] ?? false;
      return;
    }
    convs.set(key, { key, title: r.name, kind: "room", roomId: r.room_id, member: mine[i] ?? false, unread: 0, messages: new Map(), oldest: null, complete: false });
  });
  // Rooms I am in are subscribed, so their unread counts grow while they are not in view.
  for (const c of convs.values()) {
    if (c.kind === "room" && c.member && client && !client.position(c.key)) await client.subscribe(c.key).catch(showError);
  }
  renderList();
}

/** The people I exchanged direct messages with, from my own stream's latest page. */
async function loadDms(): Promise<void> {
  const own = `user:${me!.user_id}`;
  const page = await client!.history(own, { limit: 200 });
  for (const m of page) {
    const peer = peerOf(m);
    if (peer) ensureDm(peer, await nameOf(peer)).messages.set(m.seq, m);
  }
  renderList();
}

function peerOf(m: Message): string | null {
  if (!m.to || !me) return null;
  return m.from === me.user_id ? m.to : m.from;
}

function ensureDm(peer: string, name: string): Conv {
  const key = `dm:${peer}`;
  let c = convs.get(key);
  if (!c) {
    c = { key, title: name, kind: "dm", peer, member: true, unread: 0, messages: new Map(), oldest: null, complete: false };
    convs.set(key, c);
  }
  return c;
}

function renderList(): void {
  const list = $("room-list");
  const items = [...convs.values()].sort((a, b) => (a.kind === b.kind ? Number(b.member) - Number(a.member) || a.title.localeCompare(b.title) : a.kind === "room" ? -1 : 1));
  list.replaceChildren(
    ...items.map((c) => conversationItem(c, c.key === current, () => void open(c.key))),
  );
}

// ---- one conversation ----

function streamOf(c: Conv): string {
  return c.kind === "room" ? c.key : `user:${me!.user_id}`;
}

async function open(key: string): Promise<void> {
  clearError();
  const c = convs.get(key);
  if (!c || !client) return;
  current = key;
  c.unread = 0;
  try {
    if (c.kind === "room" && !c.member) {
      await api.join(c.roomId!, me!.user_id);
      c.member = true;
    }
    if (!client.position(streamOf(c))) await client.subscribe(streamOf(c));
    $("room-title").textContent = c.kind === "room" ? `# ${c.title}` : `Direct messages with ${c.title}`;
    $<HTMLInputElement>("message-input").disabled = false;
    $<HTMLButtonElement>("message-send").disabled = false;
    renderList();
    renderMessages(true);
    if (c.oldest === null) await loadOlder(c);
    renderMessages(true);
    await refreshPresence();
    clearInterval(presenceTimer);
    presenceTimer = setInterval(() => void refreshPresence(), 3000);
    $<HTMLInputElement>("message-input").focus();
  } catch (e) {
    showError(e);
  }
}

/** One page of older messages of `c` (for a DM, pages of my own stream until enough of this peer's turn up). */
async function loadOlder(c: Conv): Promise<void> {
  if (c.complete || !client) return;
  const stream = streamOf(c);
  let before = c.oldest ?? undefined;
  let found = 0;
  for (let round = 0; round < 5 && found < PAGE; round++) {
    const page = await client.history(stream, before === undefined ? { limit: PAGE } : { before, limit: PAGE });
    for (const m of page) {
      if (c.kind === "dm") {
        const peer = peerOf(m);
        if (!peer) continue;
        const dm = ensureDm(peer, await nameOf(peer));
        if (!dm.messages.has(m.seq)) dm.messages.set(m.seq, m);
        if (peer === c.peer) found += 1;
      } else if (!c.messages.has(m.seq)) {
        c.messages.set(m.seq, m);
        found += 1;
      }
    }
    if (page.length > 0) before = page[0]!.seq;
    if (page.length < PAGE || before === 1) {
      c.complete = true;
      break;
    }
    if (c.kind === "room") break;
  }
  c.oldest = before ?? 0;
  $<HTMLButtonElement>("history-more").disabled = c.complete;
  $("history-more").textContent = c.complete ? "No older messages" : "Load older messages";
}

async function onMessage(m: Message): Promise<void> {
  let c: Conv | undefined;
  if (m.conv.startsWith("room:")) c = convs.get(m.conv);
  else {
    const peer = peerOf(m);
    if (peer) c = ensureDm(peer, await nameOf(peer));
  }
  if (!c) return;
  if (c.messages.has(m.seq)) return;
  c.messages.set(m.seq, m);
  if (c.key === current) {
    const list = $("message-list");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    await renderMessages(atBottom || m.from === me?.user_id);
  } else if (m.from !== me?.user_id) {
    c.unread += 1;
    renderList();
  } else {
    renderList();
  }
}

let rendering = Promise.resolve();

function renderMessages(toBottom: boolean): Promise<void> {
  rendering = rendering.then(() => drawMessages(toBottom)).catch(showError);
  return rendering;
}

async function drawMessages(toBottom: boolean): Promise<void> {
  const list = $("message-list");
  const c = current ? convs.get(current) : undefined;
  if (!c) {
    list.replaceChildren();
    return;
  }
  const shown = [...c.messages.values()].filter((m) => c.kind === "room" || peerOf(m) === c.peer).sort((a, b) => a.seq - b.seq);
  const oldHeight = list.scrollHeight;
  const oldTop = list.scrollTop;
  const items: HTMLLIElement[] = [];
  for (const m of shown) {
    items.push(messageItem(m, await nameOf(m.from)));
  }
  if (current !== c.key) return;
  list.replaceChildren(...items);
  if (toBottom) list.scrollTop = list.scrollHeight;
  else list.scrollTop = oldTop + (list.scrollHeight - oldHeight);
}

async function more(): Promise<void> {
  const c = current ? convs.get(current) : undefined;
  if (!c || c.complete) return;
  try {
    await loadOlder(c);
    await renderMessages(false);
  } catch (e) {
    showError(e);
  }
}

async function refreshPresence(): Promise<void> {
  const c = current ? convs.get(current) : undefined;
  const ul = $("presence-list");
  if (!c || !client) return;
  try {
    let ids: string[];
    if (c.kind === "room") ids = (await client.presence(c.key)).map((p) => p.user_id);
    else {
      const online = await api.userPresence([me!.user_id, c.peer!]);
      ids = Object.entries(online).filter(([, v]) => v.online).map(([k]) => k);
    }
    const people = await Promise.all(ids.map(nameOf));
    ul.replaceChildren(...people.sort().map((n) => Object.assign(document.createElement("li"), { textContent: n })));
  } catch {
    /* shown again on the next tick */
  }
}

async function send(ev: Event): Promise<void> {
  ev.preventDefault();
  const input = $<HTMLInputElement>("message-input");
  const text = input.value.trim();
  const c = current ? convs.get(current) : undefined;
  if (!text || !c || !client) return;
  input.value = "";
  try {
    // A publish made while reconnecting waits for the connection and is stored once.
    if (c.kind === "room") await client.publish(c.key, { text });
    else await client.sendDirect(c.peer!, { text });
  } catch (e) {
    input.value = text;
    showError(e);
  }
}

async function createRoom(ev: Event): Promise<void> {
  ev.preventDefault();
  clearError();
  const input = $<HTMLInputElement>("room-create-name");
  try {
    const r = await api.createRoom(input.value.trim());
    input.value = "";
    const key = `room:${r.room_id}`;
    convs.set(key, { key, title: r.name, kind: "room", roomId: r.room_id, member: true, unread: 0, messages: new Map(), oldest: null, complete: false });
    await open(key);
  } catch (e) {
    showError(e);
  }
}

async function openDm(ev: Event): Promise<void> {
  ev.preventDefault();
  clearError();
  const input = $<HTMLInputElement>("dm-username");
  try {
    const u = await api.findUser(input.value.trim());
    names.set(u.user_id, u.username ?? u.user_id);
    input.value = "";
    const c = ensureDm(u.user_id, u.username ?? u.user_id);
    await open(c.key);
  } catch (e) {
    showError(e instanceof SwitchboardError && e.code === "not_found" ? new Error(`No user named ${input.value.trim()}`) : e);
  }
}

function init(): void {
  $("signup-form").addEventListener("submit", (e) => void signUp(e));
  $("login-form").addEventListener("submit", (e) => void logIn(e));
  $("logout").addEventListener("click", () => void logOut());
  $("room-create-form").addEventListener("submit", (e) => void createRoom(e));
  $("dm-form").addEventListener("submit", (e) => void openDm(e));
  $("composer").addEventListener("submit", (e) => void send(e));
  $("history-more").addEventListener("click", () => void more());
  $("message-list").addEventListener("scroll", () => {
    if ($("message-list").scrollTop === 0) void more();
  });
  window.addEventListener("beforeunload", () => {
    clearInterval(roomsTimer);
    void client?.close();
  });
  const saved = localStorage.getItem(TOKEN_KEY);
  if (saved) {
    api.token = saved;
    start().catch(() => {
      localStorage.removeItem(TOKEN_KEY);
      location.reload();
    });
  }
}

init();
