import type { Clock } from "../clock.ts";
import { ArborError, invalidArgument } from "../errors/index.ts";

/** Limits on failed unseal attempts. All durations are milliseconds of the injected clock. */
export interface UnsealRateLimitOptions {
  /** Failures within `windowMs` that start a backoff. Default 5. */
  maxFailures?: number;
  /** Window in which failures are counted. Default 10 minutes. */
  windowMs?: number;
  /** First backoff; each further backoff in a row doubles it. Default 1 minute. */
  backoffMs?: number;
  /** Upper bound of the doubled backoff. Default 1 hour. */
  maxBackoffMs?: number;
}

const DEFAULTS: Required<UnsealRateLimitOptions> = {
  maxFailures: 5,
  windowMs: 10 * 60_000,
  backoffMs: 60_000,
  maxBackoffMs: 60 * 60_000,
};

/**
 * Counts failed unseal attempts (rejected shares and combined keys that fail the check value) and
 * rejects submissions with RATE_LIMITED during a backoff. The backoff doubles with each lockout in
 * a row and starts again from `backoffMs` after an unseal succeeds or after a full window passes
 * without failures since the last backoff ended.
 *
 * NOTE: the counters live in this process only. A restart clears them, and several nodes count
 * separately, so the unseal endpoint still belongs on a restricted network.
 */
export class UnsealRateLimiter {
  readonly #options: Required<UnsealRateLimitOptions>;
  readonly #clock: Clock;
  #failures: number[] = [];
  #lockedUntil: number | null = null;
  #lockouts = 0;

  constructor(clock: Clock, options: UnsealRateLimitOptions = {}) {
    this.#clock = clock;
    this.#options = { ...DEFAULTS, ...withoutUndefined(options) };
    validateOptions(this.#options);
  }

  /** Throws RATE_LIMITED while a backoff runs. */
  check(): void {
    if (this.#lockedUntil === null) return;

    const remainingMs = this.#lockedUntil - this.#clock.now();
    if (remainingMs <= 0) return;

    const seconds = Math.ceil(remainingMs / 1000);
    throw new ArborError(
      "RATE_LIMITED",
      `too many failed unseal attempts: retry in ${seconds} seconds`,
    );
  }

  recordFailure(): void {
    const now = this.#clock.now();
    const { maxFailures, windowMs, backoffMs, maxBackoffMs } = this.#options;

    if (this.#lockedUntil !== null && now - this.#lockedUntil >= windowMs) this.#lockouts = 0;

    this.#failures = this.#failures.filter((at) => now - at < windowMs);
    this.#failures.push(now);
    if (this.#failures.length < maxFailures) return;

    this.#lockouts += 1;
    const backoff = Math.min(backoffMs * 2 ** (this.#lockouts - 1), maxBackoffMs);
    this.#lockedUntil = now + backoff;
    this.#failures = [];
  }

  recordSuccess(): void {
    this.#failures = [];
    this.#lockedUntil = null;
    this.#lockouts = 0;
  }
}

function withoutUndefined(options: UnsealRateLimitOptions): UnsealRateLimitOptions {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
}

function validateOptions(options: Required<UnsealRateLimitOptions>): void {
  for (const [name, value] of Object.entries(options)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw invalidArgument(`unsealRateLimit.${name}`, value, "must be a positive integer");
    }
  }
  if (options.maxBackoffMs < options.backoffMs) {
    throw invalidArgument(
      "unsealRateLimit.maxBackoffMs",
      options.maxBackoffMs,
      `must be at least backoffMs (${options.backoffMs})`,
    );
  }
}
