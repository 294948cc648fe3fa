/**
 * Per-conversation positions: the exactly-once, in-order filter between the wire and the
 * application. No IO: the client feeds it messages and carries out the actions it returns
 * (deliver, or fetch a gap from history), so its rules are unit-testable.
 */

import type { Message } from "./types.js";

/** Largest history page the server gives; gap fills ask for pages of this size. */
export const FILL_PAGE = 500;

/** What the client must do after the tracker saw something. */
export type Action =
  | { kind: "deliver"; message: Message }
  | { kind: "fetch"; conv: string; after: number; before: number };

interface ConvState {
  epoch: string;
  /** Last seq handed to the application. */
  last: number;
  /** Live messages held back while a gap is filled. */
  held: Message[] | null;
}

/** The positions of every subscribed conversation. */
export class Tracker {
  private readonly convs = new Map<string, ConvState>();

  /** `[epoch, last seq delivered]`, or undefined when `conv` is not tracked. */
  position(conv: string): [string, number] | undefined {
    const s = this.convs.get(conv);
    return s ? [s.epoch, s.last] : undefined;
  }

  /** Whether `conv` is tracked. */
  isTracked(conv: string): boolean {
    return this.convs.has(conv);
  }

  /** Every tracked conversation's position, for `resume`: `{conv: {seq, epoch}}`. */
  resume(): Record<string, { seq: number; epoch: string }> {
    const out: Record<string, { seq: number; epoch: string }> = {};
    for (const [conv, s] of this.convs) out[conv] = { seq: s.last, epoch: s.epoch };
    return out;
  }

  /** A fresh subscription: live messages follow `headSeq`. A tracked conversation keeps its position. */
  onSubscribed(conv: string, headSeq: number, epoch: string): void {
    if (!this.convs.has(conv)) this.convs.set(conv, { epoch, last: headSeq, held: null });
  }

  /** Forgets `conv` (its later frames are dropped). */
  remove(conv: string): void {
    this.convs.delete(conv);
  }

  /** A `welcome.resumed` entry: when not recovered (or another epoch) the position moves to `fromSeq - 1`. */
  onResumed(conv: string, recovered: boolean, fromSeq: number, epoch: string): void {
    const s = this.convs.get(conv);
    if (!s) return;
    if (!recovered || s.epoch !== epoch) {
      s.last = Math.max(0, fromSeq - 1);
      s.epoch = epoch;
    }
  }

  /** The connection ended: held messages go (resuming brings them back). */
  onDisconnect(): void {
    for (const s of this.convs.values()) s.held = null;
  }

  /** A `message` frame arrived. */
  onMessage(m: Message): Action[] {
    const out: Action[] = [];
    this.take(m, out);
    return out;
  }

  private take(m: Message, out: Action[]): void {
    const s = this.convs.get(m.conv);
    if (!s) return;
    if (s.held) {
      s.held.push(m);
      return;
    }
    if (m.seq <= s.last) return; // a repeat
    if (m.seq === s.last + 1) {
      s.last = m.seq;
      out.push({ kind: "deliver", message: m });
      return;
    }
    // A jump: fetch what is missing first, hold this one back.
    s.held = [m];
    out.push({ kind: "fetch", conv: m.conv, after: s.last, before: m.seq });
  }

  /** History answered a fetch: deliver what fills the gap, then the held messages (or ask for the next page). */
  onFill(conv: string, page: Message[], more: boolean): Action[] {
    const out: Action[] = [];
    const s = this.convs.get(conv);
    if (!s || !s.held) return out;
    const before = s.held.length > 0 ? s.held[0]!.seq : Number.MAX_SAFE_INTEGER;
    const full = more || page.length >= FILL_PAGE;
    for (const m of [...page].sort((a, b) => a.seq - b.seq)) {
      if (m.conv === conv && m.seq > s.last && m.seq < before) {
        s.last = m.seq;
        out.push({ kind: "deliver", message: m });
      }
    }
    if (full && s.last + 1 < before) {
      out.push({ kind: "fetch", conv, after: s.last, before });
      return out;
    }
    this.release(conv, out);
    return out;
  }

  /** The fill's history request failed: accept the jump and go on. */
  onFillFailed(conv: string): Action[] {
    const out: Action[] = [];
    this.release(conv, out);
    return out;
  }

  private release(conv: string, out: Action[]): void {
    const s = this.convs.get(conv);
    if (!s || !s.held) return;
    const held = s.held;
    s.held = null;
    const [first, ...rest] = held;
    if (first && first.seq > s.last) {
      s.last = first.seq;
      out.push({ kind: "deliver", message: first });
    }
    for (const m of rest) this.take(m, out);
  }
}
