import { sign, type JsonWebKey } from "node:crypto";

import { combine, split } from "shamir-secret-sharing";

import type { Clock } from "../clock.ts";
import { aesGcmOpen, aesGcmSeal, randomBytes, zeroize } from "../crypto/index.ts";
import { ArborError, invalidArgument } from "../errors/index.ts";
import { deriveCheckpointKey, type CheckpointKey } from "./checkpoint-key.ts";
import { instrumentRootProvider, type RootMetrics } from "./metrics.ts";
import {
  ROOT_KEY_BYTES,
  UNSEAL_KEY_BYTES,
  checkValueMatches,
  deriveCheckValue,
  openRootKey,
  rootWrapAad,
  sealRootKey,
} from "./sealed-format.ts";
import { validateStoredRoot, withStoredVersion, type StoredRoot } from "./stored-root.ts";
import type {
  Ceremony,
  InitializeOptions,
  InitializeResult,
  RootStatus,
  RootVersion,
  SealedRootProvider,
  SealedRootStore,
  UnsealProgress,
  WrappedBlob,
} from "./types.ts";
import { UnsealCeremony } from "./unseal-ceremony.ts";
import { UnsealRateLimiter, type UnsealRateLimitOptions } from "./unseal-rate-limit.ts";
import { encodeUnsealShare } from "./unseal-shares.ts";

export interface SealedRootDeps {
  store: SealedRootStore;
  clock: Clock;
  /** When given, every call is counted and timed (see `instrumentRootProvider`). */
  metrics?: RootMetrics;
  unsealRateLimit?: UnsealRateLimitOptions;
  /**
   * Milliseconds after the last accepted share at which an unfinished ceremony is discarded and
   * its shares zeroed, so partial shares do not stay in memory indefinitely. Default 15 minutes.
   */
  ceremonyTimeoutMs?: number;
}

const DEFAULT_SHARES = 5;
const DEFAULT_THRESHOLD = 3;
const MAX_SHARES = 255;
const DEFAULT_CEREMONY_TIMEOUT_MS = 15 * 60_000;

/**
 * Key material held while unsealed.
 *
 * The unseal key is kept (and zeroed on seal) instead of being discarded after unsealing, because
 * `rotate` must seal each new root version under it and `unwrap` must open versions that another
 * node added after this one unsealed. Keeping it adds little exposure, because while unsealed the
 * process already has every root key in memory, and the root keys are all the unseal key protects.
 */
interface UnsealedKeys {
  unsealKey: Uint8Array;
  rootKeys: Map<number, Uint8Array>;
  currentVersion: number;
  checkpointKey: CheckpointKey;
}

/**
 * Opens the sealed root provider. The stored record is loaded before the promise resolves, so
 * `status()` is accurate from the start: `uninitialized` when the store is empty, otherwise
 * `sealed`. The provider never reports `unavailable`; a failing store rejects the call that used
 * it, and a malformed stored record rejects this call with STORED_KEY_CORRUPT.
 */
export async function createSealedRoot(deps: SealedRootDeps): Promise<SealedRootProvider> {
  const timeout = deps.ceremonyTimeoutMs ?? DEFAULT_CEREMONY_TIMEOUT_MS;
  if (!Number.isSafeInteger(timeout) || timeout < 1) {
    throw invalidArgument(
      "ceremonyTimeoutMs",
      timeout,
      "must be a positive integer of milliseconds",
    );
  }
  const limiter = new UnsealRateLimiter(deps.clock, deps.unsealRateLimit);

  const loaded = await deps.store.load();
  const stored = loaded === null ? null : validateStoredRoot(loaded);
  const root = new SealedRoot(deps.store, deps.clock, limiter, timeout, stored);
  return deps.metrics === undefined ? root : instrumentRootProvider(root, deps.metrics);
}

class SealedRoot implements SealedRootProvider {
  readonly #store: SealedRootStore;
  readonly #clock: Clock;
  readonly #limiter: UnsealRateLimiter;
  readonly #ceremonyTimeoutMs: number;

  #stored: StoredRoot | null;
  #unsealed: UnsealedKeys | null = null;
  #ceremony: UnsealCeremony | null = null;
  // Public, so it is kept after sealing. It is null until the first unseal in this process.
  #checkpointPublicJwk: JsonWebKey | null = null;
  // Bumped by seal() and cancelUnseal() so a combine that awaited in between gives up.
  #epoch = 0;
  // Tail of the queue that runs initialize, submit and rotate one at a time (see #exclusive).
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    store: SealedRootStore,
    clock: Clock,
    limiter: UnsealRateLimiter,
    ceremonyTimeoutMs: number,
    stored: StoredRoot | null,
  ) {
    this.#store = store;
    this.#clock = clock;
    this.#limiter = limiter;
    this.#ceremonyTimeoutMs = ceremonyTimeoutMs;
    this.#stored = stored;
  }

  status(): RootStatus {
    this.#expireCeremony();
    const stored = this.#stored;
    if (stored === null) {
      return {
        state: "uninitialized",
        provider: "sealed",
        rootVersion: null,
        threshold: null,
        ceremony: null,
      };
    }
    return {
      state: this.#unsealed === null ? "sealed" : "unsealed",
      provider: "sealed",
      rootVersion: this.#unsealed?.currentVersion ?? stored.latestVersion,
      threshold: stored.record.threshold,
      ceremony: this.#ceremony?.describe() ?? null,
    };
  }

  /**
   * Validates the parameters (2 <= threshold <= shares <= 255). A threshold of 1 is rejected: every
   * share would then be the unseal key itself, and `shamir-secret-sharing` 0.0.4 does not support it.
   * Every plaintext copy of the root key, the unseal key and the binary shares is zeroed before
   * this returns. The returned base64 strings are JavaScript strings and cannot be zeroed.
   */
  initialize(options: InitializeOptions = {}): Promise<InitializeResult> {
    const shareCount = options.shares ?? DEFAULT_SHARES;
    const threshold = options.threshold ?? DEFAULT_THRESHOLD;
    return this.#exclusive(async () => {
      validateShareParameters(shareCount, threshold);
      await this.#requireNotInitialized();

      const unsealKey = randomBytes(UNSEAL_KEY_BYTES);
      const rootKey = randomBytes(ROOT_KEY_BYTES);
      let shares: Uint8Array[] = [];
      try {
        const createdAt = this.#clock.now();
        const first = { version: 1, sealedKey: sealRootKey(unsealKey, 1, rootKey), createdAt };
        const record = {
          shares: shareCount,
          threshold,
          checkValue: deriveCheckValue(unsealKey),
          createdAt,
        };
        shares = await split(unsealKey, shareCount, threshold);
        const encoded = shares.map(encodeUnsealShare);

        await this.#store.create(record, first);
        this.#stored = validateStoredRoot({ record, versions: [first] });
        return { shares: encoded, threshold, rootVersion: 1 };
      } finally {
        zeroize(unsealKey, rootKey, ...shares);
      }
    });
  }

  beginUnseal(): Ceremony {
    const stored = this.#requireInitialized();
    this.#requireSealed();
    this.#expireCeremony();
    this.#ceremony ??= new UnsealCeremony(stored.record.threshold, this.#clock.now());
    return this.#ceremony.describe();
  }

  /**
   * Accepts one share (raw bytes, see `decodeUnsealShare`) for the ceremony named by its nonce.
   * The provider copies the share, so the caller zeroes its own buffer. When the threshold is
   * reached, the shares are combined and checked against the stored check value. On a mismatch
   * the ceremony is discarded (UNSEAL_FAILED) and the share holders start a new one.
   */
  submit(ceremonyNonce: string, secret: Uint8Array): Promise<UnsealProgress> {
    return this.#exclusive(async () => {
      this.#requireInitialized();
      this.#requireSealed();
      this.#limiter.check();

      this.#expireCeremony();
      const ceremony = this.#ceremony;
      if (ceremony === null) {
        throw new ArborError(
          "CEREMONY_NOT_FOUND",
          "no unseal ceremony is in progress: start one with beginUnseal and submit its nonce",
        );
      }
      if (!ceremony.matches(ceremonyNonce)) {
        throw new ArborError(
          "CEREMONY_NONCE_MISMATCH",
          "the nonce does not match the unseal ceremony in progress: fetch the current nonce from the unseal status and submit again",
          { parameter: "nonce" },
        );
      }

      try {
        ceremony.accept(secret, this.#clock.now());
      } catch (error) {
        this.#limiter.recordFailure();
        throw error;
      }

      if (!ceremony.complete) {
        return { ...ceremony.describe(), unsealed: false };
      }
      return await this.#completeCeremony(ceremony);
    });
  }

  cancelUnseal(): void {
    this.#epoch += 1;
    this.#discardCeremony();
  }

  seal(): void {
    this.#epoch += 1;
    this.#discardCeremony();

    const keys = this.#unsealed;
    if (keys === null) return;
    this.#unsealed = null;
    zeroize(keys.unsealKey, ...keys.rootKeys.values());
    keys.rootKeys.clear();
  }

  wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<WrappedBlob> {
    return promiseOf(() => {
      const keys = this.#requireUnsealed();
      const rootVersion = keys.currentVersion;
      const rootKey = keys.rootKeys.get(rootVersion);
      if (rootKey === undefined) {
        throw new ArborError(
          "INTERNAL",
          `root version ${rootVersion} is current but its key is not loaded`,
        );
      }
      return {
        rootVersion,
        ciphertext: aesGcmSeal(rootKey, plaintext, rootWrapAad(rootVersion, aad)),
      };
    });
  }

  async unwrap(blob: WrappedBlob, aad: Uint8Array): Promise<Uint8Array> {
    const { rootVersion, ciphertext } = blob;
    let keys = this.#requireUnsealed();
    if (!Number.isSafeInteger(rootVersion) || rootVersion < 1) {
      throw blobCorrupt(rootVersion, "that is not a valid root version number");
    }

    if (!keys.rootKeys.has(rootVersion)) {
      // Another node may have rotated since this one unsealed.
      await this.#loadNewVersions();
      keys = this.#requireUnsealed();
    }
    const rootKey = keys.rootKeys.get(rootVersion);
    if (rootKey === undefined) throw blobCorrupt(rootVersion, "that root version does not exist");

    try {
      return aesGcmOpen(rootKey, ciphertext, rootWrapAad(rootVersion, aad));
    } catch (error) {
      throw blobCorrupt(
        rootVersion,
        "the blob was modified, or its AAD or root version does not match the ones it was wrapped with",
        error,
      );
    }
  }

  /**
   * Stores the version after the newest one in the store, not only the newest in memory, and makes
   * it current. If another node stores that version number first, the store's error (for example
   * CONCURRENT_UPDATE) passes through and a retry picks the next number. If the provider is sealed
   * while the store write runs, the version is still stored and the call still returns it.
   */
  rotate(): Promise<RootVersion> {
    return this.#exclusive(async () => {
      this.#requireUnsealed();
      await this.#loadNewVersions();
      const keys = this.#requireUnsealed();

      const version = keys.currentVersion + 1;
      const rootKey = randomBytes(ROOT_KEY_BYTES);
      const createdAt = this.#clock.now();
      const record = {
        version,
        sealedKey: sealRootKey(keys.unsealKey, version, rootKey),
        createdAt,
      };
      try {
        await this.#store.addVersion(record);
      } catch (error) {
        zeroize(rootKey);
        throw error;
      }

      if (this.#stored !== null) this.#stored = withStoredVersion(this.#stored, record);
      // The provider may have been sealed, and perhaps unsealed again, during the write. Keep the
      // key only if a live unsealed state still lacks it. That state has the same unseal key,
      // because every unseal of this deployment reconstructs the same one.
      const current = this.#unsealed;
      if (current === null || current.rootKeys.has(version)) {
        zeroize(rootKey);
      } else {
        current.rootKeys.set(version, rootKey);
        current.currentVersion = Math.max(current.currentVersion, version);
      }
      return { version, createdAt };
    });
  }

  signCheckpoint(digest: Uint8Array): Promise<Uint8Array> {
    return promiseOf(() => {
      const keys = this.#requireUnsealed();
      if (digest.length === 0) {
        throw invalidArgument("digest", "0 bytes", "a checkpoint digest must not be empty");
      }
      return new Uint8Array(sign(null, digest, keys.checkpointKey.privateKey));
    });
  }

  /** Rejects with SEALED until the first unseal in this process. The key stays known after seal(). */
  checkpointPublicKey(): Promise<JsonWebKey> {
    return promiseOf(() => {
      if (this.#checkpointPublicJwk === null) {
        throw sealedError("the audit checkpoint public key is known only after the first unseal");
      }
      return { ...this.#checkpointPublicJwk };
    });
  }

  /** Combines the ceremony's shares and, if they pass the check value, unseals. */
  async #completeCeremony(ceremony: UnsealCeremony): Promise<UnsealProgress> {
    const epoch = this.#epoch;
    const stored = this.#requireInitialized();
    const shares = ceremony.takeShares();

    let unsealKey: Uint8Array;
    try {
      unsealKey = await combine(shares);
    } catch (error) {
      // The shares were validated, so this is unexpected. It counts like a failed combine.
      this.#failCeremony(ceremony);
      throw unsealFailed(error);
    } finally {
      zeroize(...shares);
    }

    if (!checkValueMatches(unsealKey, stored.record.checkValue)) {
      zeroize(unsealKey);
      this.#failCeremony(ceremony);
      throw unsealFailed();
    }

    try {
      // Reload so versions that another node added are opened too.
      const loaded = await this.#store.load();
      if (this.#epoch !== epoch) {
        throw new ArborError(
          "CEREMONY_NOT_FOUND",
          "the unseal ceremony was cancelled or the root was sealed while the shares were combined: start a new ceremony",
        );
      }
      if (loaded === null) {
        throw new ArborError(
          "STORED_KEY_CORRUPT",
          "the sealed root record is missing from storage although this node loaded it earlier",
        );
      }
      this.#stored = validateStoredRoot(loaded);
      this.#unsealed = openAllVersions(unsealKey, this.#stored);
    } catch (error) {
      zeroize(unsealKey);
      if (this.#ceremony === ceremony) this.#discardCeremony();
      throw error;
    }

    this.#checkpointPublicJwk = this.#unsealed.checkpointKey.publicJwk;
    this.#limiter.recordSuccess();
    if (this.#ceremony === ceremony) this.#discardCeremony();
    return {
      nonce: ceremony.nonce,
      threshold: ceremony.threshold,
      progress: ceremony.progress,
      unsealed: true,
    };
  }

  #failCeremony(ceremony: UnsealCeremony): void {
    this.#limiter.recordFailure();
    if (this.#ceremony === ceremony) this.#discardCeremony();
  }

  /** Opens root versions that appeared in the store since this node unsealed. */
  async #loadNewVersions(): Promise<void> {
    const loaded = await this.#store.load();
    const keys = this.#unsealed;
    if (loaded === null || keys === null) return;

    const stored = validateStoredRoot(loaded);
    this.#stored = stored;
    for (const version of stored.versions) {
      if (keys.rootKeys.has(version.version)) continue;
      keys.rootKeys.set(version.version, openStoredVersion(keys.unsealKey, version));
      keys.currentVersion = Math.max(keys.currentVersion, version.version);
    }
  }

  #expireCeremony(): void {
    const ceremony = this.#ceremony;
    if (ceremony === null || ceremony.complete) return;
    if (this.#clock.now() - ceremony.lastActivityAt >= this.#ceremonyTimeoutMs) {
      this.#discardCeremony();
    }
  }

  #discardCeremony(): void {
    this.#ceremony?.discard();
    this.#ceremony = null;
  }

  #requireInitialized(): StoredRoot {
    if (this.#stored === null) {
      throw new ArborError(
        "NOT_INITIALIZED",
        "the sealed root is not initialized: run initialization first to create the root and its unseal shares",
      );
    }
    return this.#stored;
  }

  async #requireNotInitialized(): Promise<void> {
    if (this.#stored === null) {
      // Another node may have initialized the shared store since this one loaded it.
      const loaded = await this.#store.load();
      if (loaded !== null) this.#stored = validateStoredRoot(loaded);
    }
    if (this.#stored !== null) {
      throw new ArborError(
        "ALREADY_INITIALIZED",
        "the sealed root is already initialized: unseal it with the shares issued at initialization",
      );
    }
  }

  #requireSealed(): void {
    if (this.#unsealed !== null) {
      throw new ArborError("ALREADY_UNSEALED", "the root is already unsealed");
    }
  }

  #requireUnsealed(): UnsealedKeys {
    this.#requireInitialized();
    if (this.#unsealed === null) {
      throw sealedError("the root is sealed: unseal it with a threshold of shares first");
    }
    return this.#unsealed;
  }

  /**
   * Runs operations that await between reading and changing state one at a time, so two
   * submissions cannot both complete a ceremony and two rotations cannot pick the same version.
   */
  #exclusive<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(operation);
    this.#queue = result.catch(() => undefined);
    return result;
  }
}

function validateShareParameters(shares: number, threshold: number): void {
  if (!Number.isSafeInteger(shares) || shares < 2 || shares > MAX_SHARES) {
    throw invalidArgument("shares", shares, `must be an integer from 2 to ${MAX_SHARES}`);
  }
  if (!Number.isSafeInteger(threshold) || threshold < 2 || threshold > shares) {
    throw invalidArgument(
      "threshold",
      threshold,
      `must be an integer from 2 to the number of shares (${shares})`,
    );
  }
}

/** Opens every stored version. On any failure it zeroes what it opened and throws STORED_KEY_CORRUPT. */
function openAllVersions(unsealKey: Uint8Array, stored: StoredRoot): UnsealedKeys {
  const rootKeys = new Map<number, Uint8Array>();
  try {
    for (const version of stored.versions) {
      rootKeys.set(version.version, openStoredVersion(unsealKey, version));
    }
    // validateStoredRoot guarantees that version 1 exists.
    const checkpointKey = deriveCheckpointKey(rootKeys.get(1)!);
    return { unsealKey, rootKeys, currentVersion: stored.latestVersion, checkpointKey };
  } catch (error) {
    zeroize(...rootKeys.values());
    throw error;
  }
}

function openStoredVersion(
  unsealKey: Uint8Array,
  version: { version: number; sealedKey: Uint8Array },
): Uint8Array {
  try {
    return openRootKey(unsealKey, version.version, version.sealedKey);
  } catch (error) {
    // The unseal key already passed the check value, so the stored sealed key itself is bad.
    throw new ArborError(
      "STORED_KEY_CORRUPT",
      `sealed root version ${version.version} does not open with the verified unseal key: its stored sealed key is corrupt`,
      {},
      { cause: error },
    );
  }
}

/**
 * STORED_KEY_CORRUPT (500) for a blob that fails to unwrap. Blobs come from Arbor's own storage,
 * so this is corruption or a bug, not a client error. The message names the root version and
 * never includes the blob.
 */
function blobCorrupt(rootVersion: number, reason: string, cause?: unknown): ArborError {
  return new ArborError(
    "STORED_KEY_CORRUPT",
    `stored blob under root version ${String(rootVersion)} failed to unwrap: ${reason}`,
    {},
    { cause },
  );
}

function unsealFailed(cause?: unknown): ArborError {
  return new ArborError(
    "UNSEAL_FAILED",
    "unseal failed: the combined shares do not reproduce the unseal key, so at least one share is wrong or altered. The ceremony was reset: start a new one",
    {},
    { cause },
  );
}

function sealedError(message: string): ArborError {
  return new ArborError("SEALED", message);
}

/** Runs a synchronous operation as a promise, turning a thrown error into a rejection. */
function promiseOf<T>(operation: () => T): Promise<T> {
  return new Promise<T>((resolve) => resolve(operation()));
}
