/** Source of the current time in integer milliseconds since the Unix epoch. Injected everywhere. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
