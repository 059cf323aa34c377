import type { KeyObject } from "node:crypto";

import { LRUCache } from "lru-cache";

import type { Clock } from "../clock.ts";
import { MaterialCache, type MaterialCacheOptions } from "../hierarchy/index.ts";

/**
 * The material cache, telling listeners whenever it is cleared: on seal, and whenever a key
 * version stops being usable. Caches derived from plaintext material register here so they never
 * outlive it.
 */
export class ObservedMaterialCache extends MaterialCache {
  readonly ttlMs: number;
  readonly #listeners: Array<() => void> = [];

  constructor(options: MaterialCacheOptions) {
    super(options);
    this.ttlMs = options.ttlMs ?? 5 * 60_000;
  }

  onClear(listener: () => void): void {
    this.#listeners.push(listener);
  }

  override clear(): void {
    super.clear();
    for (const listener of this.#listeners) listener();
  }
}

/**
 * Imported private signing keys. Importing PKCS#8 DER into a KeyObject took about 0.37 ms on the
 * development machine: about 2,700 imports per second against 27,000 Ed25519 signatures (Node
 * 20.20, OpenSSL 3). Without this cache, issuing a token spent most of its CPU time on the import.
 *
 * A KeyObject cannot be zeroed from JavaScript; OpenSSL clears the key's memory when the object is
 * garbage collected. The cache therefore holds no key longer than the material cache holds the
 * material it came from: entries expire after the material cache's TTL and are all dropped when
 * the material cache is cleared (on seal, and when a version is disabled or revoked).
 */
export class SigningKeyCache {
  readonly #entries: LRUCache<string, KeyObject>;

  constructor(options: { clock: Clock; ttlMs: number; maxEntries?: number }) {
    const { clock } = options;
    this.#entries = new LRUCache<string, KeyObject>({
      max: options.maxEntries ?? 1000,
      ttl: options.ttlMs,
      ttlAutopurge: true,
      ttlResolution: 0,
      perf: { now: () => clock.now() },
    });
  }

  /** Drops every entry when `material` is cleared. */
  followClears(material: ObservedMaterialCache): this {
    material.onClear(() => this.clear());
    return this;
  }

  get(keyId: string, version: number): KeyObject | undefined {
    return this.#entries.get(`${keyId}#${version}`);
  }

  put(keyId: string, version: number, key: KeyObject): void {
    this.#entries.set(`${keyId}#${version}`, key);
  }

  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
