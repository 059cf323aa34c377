import { LRUCache } from "lru-cache";

/** A cached decision, with the instant (ms) from which it must not be used. */
interface Entry<T> {
  value: T;
  validUntil: number;
}

export interface DecisionCacheOptions {
  /** How long a decision stays usable, in milliseconds; 0 turns the cache off. */
  ttlMs: number;
  maxEntries: number;
}

/**
 * Remembers recent decisions by request for a short time. `clear` is called on every policy or
 * grant change, so no decision outlives the policies it was made with. A decision that depends on
 * a break-glass grant also ends when the grant expires (the caller passes that as `validUntil`).
 *
 * NOTE: a stored policy that reads `context.now` can see a decision up to `ttlMs` old; the
 * built-in policies only compare `now` with break-glass expiries, which `validUntil` covers.
 */
export class DecisionCache<T extends object> {
  readonly #ttlMs: number;
  readonly #entries: LRUCache<string, Entry<T>> | null;

  constructor(options: DecisionCacheOptions) {
    this.#ttlMs = options.ttlMs;
    this.#entries =
      options.ttlMs > 0 && options.maxEntries > 0
        ? new LRUCache<string, Entry<T>>({ max: options.maxEntries })
        : null;
  }

  get(key: string, now: number): T | undefined {
    const entry = this.#entries?.get(key);
    if (entry === undefined) return undefined;
    if (entry.validUntil <= now) {
      this.#entries?.delete(key);
      return undefined;
    }
    return entry.value;
  }

  /** Stores a decision until `now + ttlMs`, or until `validUntil` if that comes first. */
  set(key: string, value: T, now: number, validUntil = Number.POSITIVE_INFINITY): void {
    if (this.#entries === null) return;
    this.#entries.set(key, { value, validUntil: Math.min(now + this.#ttlMs, validUntil) });
  }

  clear(): void {
    this.#entries?.clear();
  }

  get size(): number {
    return this.#entries?.size ?? 0;
  }
}
