import type { Clock } from "../../src/clock.ts";

/** A clock tests move by hand. Starts at a fixed instant so stored timestamps are predictable. */
export class FakeClock implements Clock {
  #now: number;

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  advance(ms: number): void {
    this.#now += ms;
  }
}
