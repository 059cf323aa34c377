import { LRUCache } from "lru-cache";

import type { Clock } from "../clock.ts";

export interface MaterialCacheOptions {
  /** Maximum number of unwrapped versions held at once. */
  maxEntries?: number;
  /** Maximum age of an entry in milliseconds; an HSM outage is served from the cache this long. */
  ttlMs?: number;
  clock: Clock;
}

/**
 * Unwrapped key versions held in memory so the hot path makes no root call. Bounded by count and
 * age; every entry is zeroed when it is evicted, expires, is replaced or the cache is cleared.
 * Callers receive copies (see {@link MaterialCache.copy}) so an eviction never zeroes bytes that
 * are still in use.
 */
export class MaterialCache {
  readonly #entries: LRUCache<string, Uint8Array>;

  constructor(options: MaterialCacheOptions) {
    const { clock } = options;
    this.#entries = new LRUCache<string, Uint8Array>({
      max: options.maxEntries ?? 10_000,
      ttl: options.ttlMs ?? 5 * 60_000,
      ttlAutopurge: true,
      // lru-cache caches "now" for ttlResolution ms; read the injected clock on every check instead.
      ttlResolution: 0,
      perf: { now: () => clock.now() },
      dispose: (material) => material.fill(0),
    });
  }

  /** Returns a copy of the cached material, or undefined. The caller zeroes the copy after use. */
  copy(keyId: string, version: number): Uint8Array | undefined {
    const material = this.#entries.get(cacheKey(keyId, version));
    return material === undefined ? undefined : Uint8Array.from(material);
  }

  /**
   * Stores `material` and takes ownership of it: the caller must not use or zero the buffer
   * afterwards, because the cache zeroes it when the entry goes.
   */
  put(keyId: string, version: number, material: Uint8Array): void {
    this.#entries.set(cacheKey(keyId, version), material);
  }

  delete(keyId: string, version: number): void {
    this.#entries.delete(cacheKey(keyId, version));
  }

  /** Zeroes and drops every entry; called on seal and whenever a version stops being usable. */
  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}

function cacheKey(keyId: string, version: number): string {
  return `${keyId}#${version}`;
}
