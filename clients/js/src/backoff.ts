/**
 * Exponential backoff with full jitter: attempt `n` waits a random time in
 * `[0, min(max, base * 2^n)]`, as the Rust SDK does.
 */

/** Backoff between connection rounds. */
export class Backoff {
  /** First step (ms). */
  base: number;
  /** Largest step (ms). */
  max: number;
  private attempt = 0;
  private readonly random: () => number;

  /** `random` returns a number in [0, 1) (Math.random by default; tests pass their own). */
  constructor(baseMs: number, maxMs: number, random: () => number = Math.random) {
    this.base = Math.max(1, baseMs);
    this.max = Math.max(this.base, maxMs);
    this.random = random;
  }

  /** The upper bound of the next delay. */
  ceiling(): number {
    return Math.min(this.max, this.base * 2 ** Math.min(this.attempt, 40));
  }

  /** The next delay (ms), uniformly random below the current ceiling, which then doubles. */
  nextDelay(): number {
    const d = Math.floor(this.random() * (this.ceiling() + 1));
    this.attempt += 1;
    return Math.min(d, this.max);
  }

  /** Back to the first step (after a successful connection). */
  reset(): void {
    this.attempt = 0;
  }

  /** Takes the dispatcher's `backoff` hint (`base_ms`, `max_ms`) when it is sane. */
  hint(baseMs: number, maxMs: number): void {
    if (baseMs > 0 && maxMs >= baseMs) {
      this.base = baseMs;
      this.max = maxMs;
    }
  }
}

/** A random delay in `[0, maxMs]`. */
export function jitter(maxMs: number, random: () => number = Math.random): number {
  return Math.floor(random() * (maxMs + 1));
}
