import type { JsonWebKey } from "node:crypto";

import type { Clock } from "../../clock.ts";
import { GCM_NONCE_BYTES, GCM_TAG_BYTES, randomBytes, zeroize } from "../../crypto/index.ts";
import { ArborError, invalidArgument } from "../../errors/index.ts";
import { instrumentRootProvider, type RootMetrics } from "../metrics.ts";
import { rootWrapAad } from "../sealed-format.ts";
import type { Ceremony, RootStatus, RootVersion, UnsealProgress, WrappedBlob } from "../types.ts";
import { UnsealRateLimiter, type UnsealRateLimitOptions } from "../unseal-rate-limit.ts";
import { ckrName, loadPkcs11Calls, type Pkcs11Calls, type Pkcs11Handle } from "./calls.ts";
import {
  PIN_ERRORS,
  Pkcs11Token,
  Pkcs11TokenError,
  type Pkcs11Logger,
  type SessionContext,
} from "./module.ts";
import { PinCeremony, checkedPin, readConfiguredPin, type Pkcs11PinSource } from "./pin.ts";
import { validateStoredPkcs11Root, withVersion, type StoredPkcs11Root } from "./stored-state.ts";
import { CKM_EDDSA, ED25519_SIGNATURE_BYTES, aesGcmMechanism, toBuffer } from "./templates.ts";
import {
  adoptRootKey,
  destroyQuietly,
  disableRootKey,
  findCheckpointPrivateKey,
  findRootKey,
  generateCheckpointKey,
  generateRootKey,
  newObjectId,
  newObjectLabel,
  readCheckpointPublicKey,
  verifyRootKey,
} from "./token-objects.ts";
import type {
  Pkcs11InitializeOptions,
  Pkcs11InitializeResult,
  Pkcs11RootProvider,
  Pkcs11RootStore,
  Pkcs11RootVersionInfo,
  Pkcs11RootVersionRecord,
} from "./types.ts";

export interface Pkcs11RootDeps {
  store: Pkcs11RootStore;
  clock: Clock;
  logger: Pkcs11Logger;
  /** When given, every call is counted and timed (see `instrumentRootProvider`). */
  metrics?: RootMetrics;
  /** Path of the PKCS#11 module; required unless `calls` is given. */
  modulePath?: string;
  /** The module's calls; tests pass a wrapper that injects faults. Default: `modulePath` loaded. */
  calls?: Pkcs11Calls;
  /** CKA_LABEL of the token, at most 32 bytes. */
  tokenLabel: string;
  /** Label of an existing key that `initialize` adopts when its options name none. */
  keyLabel?: string | null;
  /** PIN source that `initialize` and `unsealWithConfiguredPin` read. */
  pin?: Pkcs11PinSource;
  unsealRateLimit?: UnsealRateLimitOptions;
  /** Milliseconds after which an unused unseal ceremony is discarded. Default 15 minutes. */
  ceremonyTimeoutMs?: number;
  /** Minimum milliseconds between re-connect attempts while the token is unreachable. Default 5000. */
  recoveryIntervalMs?: number;
}

const DEFAULT_CEREMONY_TIMEOUT_MS = 15 * 60_000;
const MAX_TOKEN_LABEL_BYTES = 32;

// C_Decrypt failures that mean the blob, its IV or its AAD is wrong. SoftHSM 2.6.1 reports a GCM
// tag mismatch as CKR_GENERAL_ERROR; PKCS#11 3.0 modules report CKR_AEAD_DECRYPT_FAILED.
const BLOB_REJECTED: ReadonlySet<string> = new Set([
  "CKR_GENERAL_ERROR",
  "CKR_AEAD_DECRYPT_FAILED",
  "CKR_ENCRYPTED_DATA_INVALID",
  "CKR_ENCRYPTED_DATA_LEN_RANGE",
]);

/**
 * Opens the PKCS#11 root provider. The stored record is loaded before the promise resolves, so
 * `status()` is accurate from the start. The token itself is first contacted at initialization
 * or unseal. Rejects with INVALID_ARGUMENT when the module cannot be loaded or the configured
 * token label differs from the stored one.
 */
export async function createPkcs11Root(deps: Pkcs11RootDeps): Promise<Pkcs11RootProvider> {
  validateTokenLabel(deps.tokenLabel);
  if (deps.keyLabel !== undefined && deps.keyLabel !== null && deps.keyLabel === "") {
    throw invalidArgument("key_label", deps.keyLabel, "must not be empty when set");
  }
  const ceremonyTimeoutMs = deps.ceremonyTimeoutMs ?? DEFAULT_CEREMONY_TIMEOUT_MS;
  if (!Number.isSafeInteger(ceremonyTimeoutMs) || ceremonyTimeoutMs < 1) {
    throw invalidArgument(
      "ceremonyTimeoutMs",
      ceremonyTimeoutMs,
      "must be a positive integer of milliseconds",
    );
  }

  const calls = deps.calls ?? loadModule(deps.modulePath);
  const limiter = new UnsealRateLimiter(deps.clock, deps.unsealRateLimit);
  const loaded = await deps.store.load();
  const stored = loaded === null ? null : validateStoredPkcs11Root(loaded);
  if (stored !== null && stored.record.tokenLabel !== deps.tokenLabel) {
    throw invalidArgument(
      "token_label",
      deps.tokenLabel,
      `this deployment's root keys are on the token labelled ${stored.record.tokenLabel}; configure that label`,
    );
  }

  const token = new Pkcs11Token({
    calls,
    tokenLabel: deps.tokenLabel,
    clock: deps.clock,
    logger: deps.logger,
    recoveryIntervalMs: deps.recoveryIntervalMs,
  });
  const root = new Pkcs11Root(deps, token, limiter, ceremonyTimeoutMs, stored);
  return deps.metrics === undefined ? root : instrumentRootProvider(root, deps.metrics);
}

function loadModule(modulePath: string | undefined): Pkcs11Calls {
  if (modulePath === undefined || modulePath === "") {
    throw invalidArgument("module", modulePath, "the path of the PKCS#11 module is required");
  }
  try {
    return loadPkcs11Calls(modulePath);
  } catch (error) {
    throw new ArborError(
      "INVALID_ARGUMENT",
      `failed to load the PKCS#11 module ${modulePath}: ${error instanceof Error ? error.message : String(error)}. Check the path (Debian's SoftHSM2 module is /usr/lib/softhsm/libsofthsm2.so)`,
      { parameter: "module", value: modulePath },
      { cause: error },
    );
  }
}

function validateTokenLabel(label: string): void {
  const bytes = Buffer.byteLength(label, "utf8");
  if (label.trim() === "" || bytes > MAX_TOKEN_LABEL_BYTES || label !== label.trimEnd()) {
    throw invalidArgument(
      "token_label",
      label,
      `must be 1 to ${MAX_TOKEN_LABEL_BYTES} bytes without trailing spaces, as in CK_TOKEN_INFO`,
    );
  }
}

class Pkcs11Root implements Pkcs11RootProvider {
  readonly #store: Pkcs11RootStore;
  readonly #clock: Clock;
  readonly #logger: Pkcs11Logger;
  readonly #token: Pkcs11Token;
  readonly #limiter: UnsealRateLimiter;
  readonly #ceremonyTimeoutMs: number;
  readonly #pinSource: Pkcs11PinSource;
  readonly #defaultAdoptLabel: string | null;

  #stored: StoredPkcs11Root | null;
  // Current root version while unsealed; null while sealed.
  #currentVersion: number | null = null;
  #ceremony: PinCeremony | null = null;
  // Public, so it is kept after sealing. It is null until the first unseal in this process.
  #checkpointPublicJwk: JsonWebKey | null = null;
  // Bumped by seal() and cancelUnseal() so a submission that awaited in between gives up.
  #epoch = 0;
  // Tail of the queue that runs initialize, submit, rotate and disableVersion one at a time.
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    deps: Pkcs11RootDeps,
    token: Pkcs11Token,
    limiter: UnsealRateLimiter,
    ceremonyTimeoutMs: number,
    stored: StoredPkcs11Root | null,
  ) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#logger = deps.logger;
    this.#token = token;
    this.#limiter = limiter;
    this.#ceremonyTimeoutMs = ceremonyTimeoutMs;
    this.#pinSource = deps.pin ?? {};
    this.#defaultAdoptLabel = deps.keyLabel ?? null;
    this.#stored = stored;
    token.setProbe((context) => this.#probe(context));
  }

  status(): RootStatus {
    this.#expireCeremony();
    const stored = this.#stored;
    if (stored === null) {
      return { state: "uninitialized", provider: "pkcs11", rootVersion: null, ceremony: null };
    }
    const current = this.#liveVersion();
    if (current === null) {
      return {
        state: "sealed",
        provider: "pkcs11",
        rootVersion: stored.latestVersion,
        ceremony: this.#ceremony?.describe() ?? null,
      };
    }
    return {
      state: this.#token.state === "unavailable" ? "unavailable" : "unsealed",
      provider: "pkcs11",
      rootVersion: current,
      ceremony: null,
    };
  }

  /**
   * Logs in with the PIN (given, or read from the configured source), then generates root
   * version 1, or adopts the key named by `adoptKeyLabel` (or the configured key label), and
   * generates the Ed25519 checkpoint key pair. Objects generated here are destroyed again if
   * storing their labels fails; an adopted key is never touched. A PIN the token refuses counts
   * toward the unseal rate limit.
   */
  initialize(options: Pkcs11InitializeOptions = {}): Promise<Pkcs11InitializeResult> {
    return this.#exclusive(async () => {
      await this.#requireNotInitialized();
      this.#requireSealed();
      this.#limiter.check();

      const pin =
        options.pin === undefined
          ? await readConfiguredPin(this.#pinSource)
          : checkedPin(Uint8Array.from(options.pin), "the initialization request");
      if (pin === null) {
        throw new ArborError(
          "INVALID_ARGUMENT",
          "initializing the PKCS#11 root needs the token's user PIN: set ARBOR_PKCS11_PIN or a PIN file",
          { parameter: "pin" },
        );
      }
      const adoptLabel = options.adoptKeyLabel ?? this.#defaultAdoptLabel;

      try {
        this.#login(pin);
      } finally {
        zeroize(pin);
      }
      try {
        return await this.#createRoot(adoptLabel);
      } finally {
        this.#token.logout();
      }
    });
  }

  async #createRoot(adoptLabel: string | null): Promise<Pkcs11InitializeResult> {
    const createdAt = this.#clock.now();
    const tokenLabel = this.#token.tokenLabel;
    const first: Pkcs11RootVersionRecord = {
      version: 1,
      keyLabel: adoptLabel ?? newObjectLabel("arbor-root-v1"),
      keyId: newObjectId(),
      adopted: adoptLabel !== null,
      createdAt,
      disabledAt: null,
    };
    const checkpoint = {
      checkpointKeyLabel: newObjectLabel("arbor-checkpoint"),
      checkpointKeyId: newObjectId(),
    };

    // Objects generated so far, destroyed again if a later step fails.
    const generated: Pkcs11Handle[] = [];
    const jwk = this.#callOrDestroy(generated, "initialize the root", (context) => {
      if (adoptLabel === null) {
        generated.push(generateRootKey(context, first));
      } else {
        const adopted = adoptRootKey(context, adoptLabel, tokenLabel);
        first.keyId = adopted.keyId;
        if (!adopted.neverExtractable) {
          this.#logger.warn(
            { tokenLabel, keyLabel: adoptLabel },
            "adopted root key has CKA_NEVER_EXTRACTABLE false: it was extractable once, so copies may exist outside the token",
          );
        }
      }
      const pair = generateCheckpointKey(context, checkpoint);
      generated.push(...pair.handles);
      return pair.jwk;
    });

    const record = {
      tokenLabel,
      tokenSerial: this.#token.serialNumber ?? "",
      ...checkpoint,
      checkpointPublicJwk: jwk,
      createdAt,
    };
    try {
      await this.#store.create(record, first);
    } catch (error) {
      this.#destroyUnused(generated);
      throw error;
    }
    this.#stored = validateStoredPkcs11Root({ record, versions: [first] });
    this.#logger.info(
      { tokenLabel, keyLabel: first.keyLabel, adopted: first.adopted },
      "PKCS#11 root initialized",
    );
    return {
      shares: [],
      threshold: 1,
      rootVersion: 1,
      tokenLabel,
      keyLabel: first.keyLabel,
      adopted: first.adopted,
      checkpointKeyLabel: checkpoint.checkpointKeyLabel,
    };
  }

  beginUnseal(): Ceremony {
    this.#requireInitialized();
    this.#requireSealed();
    this.#expireCeremony();
    this.#ceremony ??= new PinCeremony(this.#clock.now());
    return this.#ceremony.describe();
  }

  /**
   * Logs in with the PIN for the ceremony named by its nonce. The provider copies the PIN, so the
   * caller zeroes its own buffer. A PIN the token refuses ends the ceremony with UNSEAL_FAILED and
   * counts toward the rate limit (SoftHSM never locks its PIN, so Arbor limits attempts itself).
   * An unreachable token is ROOT_UNAVAILABLE and keeps the ceremony.
   */
  submit(ceremonyNonce: string, secret: Uint8Array): Promise<UnsealProgress> {
    return this.#exclusive(async () => {
      this.#requireInitialized();
      this.#requireSealed();
      this.#limiter.check();
      const ceremony = this.#requireCeremony(ceremonyNonce);

      let pin: Uint8Array;
      try {
        pin = checkedPin(Uint8Array.from(secret), "the unseal submission");
      } catch (error) {
        this.#failCeremony(ceremony);
        throw error;
      }

      const epoch = this.#epoch;
      let stored: StoredPkcs11Root;
      try {
        // Reload so root versions that another node added are known.
        const loaded = await this.#store.load();
        if (this.#epoch !== epoch) {
          throw new ArborError(
            "CEREMONY_NOT_FOUND",
            "the unseal ceremony was cancelled or the root was sealed during the submission: start a new ceremony",
          );
        }
        if (loaded === null) {
          throw new ArborError(
            "STORED_KEY_CORRUPT",
            "the PKCS#11 root record is missing from storage although this node loaded it earlier",
          );
        }
        stored = validateStoredPkcs11Root(loaded);
        this.#stored = stored;
        this.#login(pin, ceremony);
      } finally {
        zeroize(pin);
      }

      try {
        this.#verifyAfterLogin(stored);
      } catch (error) {
        this.#token.logout();
        if (this.#ceremony === ceremony) this.#ceremony = null;
        throw error;
      }

      this.#currentVersion = stored.latestVersion;
      this.#limiter.recordSuccess();
      if (this.#ceremony === ceremony) this.#ceremony = null;
      this.#logger.info(
        { tokenLabel: this.#token.tokenLabel, rootVersion: this.#currentVersion },
        "PKCS#11 root unsealed",
      );
      return { nonce: ceremony.nonce, threshold: 1, progress: 1, unsealed: true };
    });
  }

  async unsealWithConfiguredPin(): Promise<boolean> {
    const pin = await readConfiguredPin(this.#pinSource);
    if (pin === null) return false;
    try {
      const { nonce } = this.beginUnseal();
      await this.submit(nonce, pin);
      return true;
    } finally {
      zeroize(pin);
    }
  }

  cancelUnseal(): void {
    this.#epoch += 1;
    this.#ceremony = null;
  }

  /** Logs out, closes every session and zeroes the kept PIN. */
  seal(): void {
    this.#epoch += 1;
    this.#ceremony = null;
    this.#currentVersion = null;
    this.#token.logout();
  }

  close(): void {
    this.seal();
  }

  /**
   * Encrypts with CKM_AES_GCM under the current root version's key: a fresh 96-bit IV from
   * node:crypto, a 128-bit tag and AAD = length-prefixed ("arbor/root-wrap/v1", root version,
   * aad), the same binding as the sealed root. The blob is IV || ciphertext || tag.
   */
  async wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<WrappedBlob> {
    let version = this.#requireUnsealed();
    try {
      return { rootVersion: version, ciphertext: this.#encrypt(version, plaintext, aad) };
    } catch (error) {
      if (!(error instanceof Pkcs11TokenError) || error.ckr !== "CKR_KEY_FUNCTION_NOT_PERMITTED") {
        throw this.#tokenFailure(error, "wrap");
      }
      // Another node may have rotated the root and disabled this version.
      await this.#loadNewVersions();
      const newer = this.#requireUnsealed();
      if (newer === version) {
        throw new ArborError(
          "ROOT_UNAVAILABLE",
          `the root could not wrap: root version ${version}'s key is disabled on the token (CKA_ENCRYPT is false) and no newer version exists`,
          {},
          { cause: error },
        );
      }
      version = newer;
    }
    try {
      return { rootVersion: version, ciphertext: this.#encrypt(version, plaintext, aad) };
    } catch (error) {
      throw this.#tokenFailure(error, "wrap");
    }
  }

  async unwrap(blob: WrappedBlob, aad: Uint8Array): Promise<Uint8Array> {
    const { rootVersion, ciphertext } = blob;
    this.#requireUnsealed();
    if (!Number.isSafeInteger(rootVersion) || rootVersion < 1) {
      throw this.#blobCorrupt(rootVersion, "that is not a valid root version number");
    }

    let version = this.#versionRecord(rootVersion);
    if (version === undefined) {
      // Another node may have rotated since this one unsealed.
      await this.#loadNewVersions();
      this.#requireUnsealed();
      version = this.#versionRecord(rootVersion);
    }
    if (version === undefined) {
      throw this.#blobCorrupt(rootVersion, "that root version does not exist");
    }
    if (version.disabledAt !== null) {
      throw this.#blobCorrupt(rootVersion, "that root version is disabled");
    }
    if (ciphertext.length < GCM_NONCE_BYTES + GCM_TAG_BYTES) {
      throw this.#blobCorrupt(rootVersion, "the blob is shorter than an IV and a tag");
    }

    try {
      return this.#decrypt(version, ciphertext, aad);
    } catch (error) {
      if (error instanceof BlobRejected) {
        throw this.#blobCorrupt(
          rootVersion,
          "the blob was modified, or its AAD or root version does not match the ones it was wrapped with",
          error.cause,
        );
      }
      if (error instanceof Pkcs11TokenError && error.ckr === "CKR_KEY_FUNCTION_NOT_PERMITTED") {
        throw this.#blobCorrupt(rootVersion, "that root version's key is disabled on the token");
      }
      throw this.#tokenFailure(error, "unwrap");
    }
  }

  /**
   * Generates the next root version's key on the token and makes it current. If another node
   * stores that version number first, the store's CONCURRENT_UPDATE passes through, the unused key
   * is destroyed, and a retry picks the next number. Existing blobs keep their version; run the
   * hierarchy's re-wrap to move them.
   */
  rotate(): Promise<RootVersion> {
    return this.#exclusive(async () => {
      this.#requireUnsealed();
      await this.#loadNewVersions();
      this.#requireUnsealed();
      const stored = this.#requireInitialized();

      const version = stored.latestVersion + 1;
      const createdAt = this.#clock.now();
      const record: Pkcs11RootVersionRecord = {
        version,
        keyLabel: newObjectLabel(`arbor-root-v${version}`),
        keyId: newObjectId(),
        adopted: false,
        createdAt,
        disabledAt: null,
      };
      const handle = this.#call("rotate", (context) => generateRootKey(context, record));
      try {
        await this.#store.addVersion(record);
      } catch (error) {
        this.#destroyUnused([handle]);
        throw error;
      }

      if (this.#stored !== null) this.#stored = withVersion(this.#stored, record);
      if (this.#currentVersion !== null) {
        this.#currentVersion = Math.max(this.#currentVersion, version);
      }
      this.#logger.info(
        { tokenLabel: this.#token.tokenLabel, rootVersion: version, keyLabel: record.keyLabel },
        "PKCS#11 root rotated",
      );
      return { version, createdAt };
    });
  }

  disableVersion(version: number): Promise<void> {
    return this.#exclusive(async () => {
      this.#requireUnsealed();
      await this.#loadNewVersions();
      const current = this.#requireUnsealed();
      const record = this.#versionRecord(version);
      if (record === undefined) {
        throw invalidArgument("version", version, "no root version with this number exists");
      }
      if (version === current) {
        throw new ArborError(
          "KEY_STATE_CONFLICT",
          `root version ${version} is the current version and cannot be disabled; rotate the root first`,
          { parameter: "version", value: version },
        );
      }

      // The token first: if the process stops before the store write, running this again
      // repeats the harmless attribute change and then records it.
      this.#call("disable a root version", (context) => disableRootKey(context, record));
      if (record.disabledAt === null) {
        const at = this.#clock.now();
        await this.#store.markDisabled(version, at);
        if (this.#stored !== null)
          this.#stored = withVersion(this.#stored, { ...record, disabledAt: at });
      }
      this.#logger.info(
        { tokenLabel: this.#token.tokenLabel, rootVersion: version, keyLabel: record.keyLabel },
        "PKCS#11 root version disabled",
      );
    });
  }

  async listVersions(): Promise<Pkcs11RootVersionInfo[]> {
    const loaded = await this.#store.load();
    if (loaded === null) return [];
    return validateStoredPkcs11Root(loaded).versions.map((version) => ({
      version: version.version,
      keyLabel: version.keyLabel,
      adopted: version.adopted,
      createdAt: version.createdAt,
      disabledAt: version.disabledAt,
    }));
  }

  /** Signs with CKM_EDDSA (Ed25519) using the checkpoint private key on the token. */
  signCheckpoint(digest: Uint8Array): Promise<Uint8Array> {
    return promiseOf(() => {
      this.#requireUnsealed();
      if (digest.length === 0) {
        throw invalidArgument("digest", "0 bytes", "a checkpoint digest must not be empty");
      }
      const stored = this.#requireInitialized();
      return this.#call("sign the checkpoint", (context) => {
        const key = findCheckpointPrivateKey(context, stored.record);
        context.calls.C_SignInit(context.session, { mechanism: CKM_EDDSA }, key);
        const signature = context.calls.C_Sign(
          context.session,
          toBuffer(digest),
          Buffer.alloc(ED25519_SIGNATURE_BYTES),
        );
        return Uint8Array.from(signature);
      });
    });
  }

  /** Rejects with SEALED until the first unseal in this process. The key stays known after seal(). */
  checkpointPublicKey(): Promise<JsonWebKey> {
    return promiseOf(() => {
      if (this.#checkpointPublicJwk === null) {
        throw new ArborError(
          "SEALED",
          "the audit checkpoint public key is known only after the first unseal",
        );
      }
      return { ...this.#checkpointPublicJwk };
    });
  }

  #encrypt(version: number, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
    const record = this.#versionRecord(version);
    if (record === undefined) {
      throw new ArborError("INTERNAL", `root version ${version} is current but not stored`);
    }
    const iv = randomBytes(GCM_NONCE_BYTES);
    const mechanism = aesGcmMechanism(iv, rootWrapAad(version, aad));
    const sealed = this.#token.run("C_Encrypt", (context) => {
      const key = findRootKey(context, record);
      context.calls.C_EncryptInit(context.session, mechanism, key);
      return context.calls.C_Encrypt(
        context.session,
        toBuffer(plaintext),
        Buffer.alloc(plaintext.length + GCM_TAG_BYTES),
      );
    });
    if (sealed.length !== plaintext.length + GCM_TAG_BYTES) {
      throw new ArborError(
        "INTERNAL",
        `the token returned ${sealed.length} bytes for AES-GCM over ${plaintext.length} bytes; expected ${plaintext.length + GCM_TAG_BYTES}`,
      );
    }
    const blob = new Uint8Array(GCM_NONCE_BYTES + sealed.length);
    blob.set(iv, 0);
    blob.set(sealed, GCM_NONCE_BYTES);
    return blob;
  }

  #decrypt(version: Pkcs11RootVersionRecord, ciphertext: Uint8Array, aad: Uint8Array): Uint8Array {
    const iv = ciphertext.subarray(0, GCM_NONCE_BYTES);
    const body = ciphertext.subarray(GCM_NONCE_BYTES);
    const mechanism = aesGcmMechanism(iv, rootWrapAad(version.version, aad));
    return this.#token.run("C_Decrypt", (context) => {
      const key = findRootKey(context, version);
      context.calls.C_DecryptInit(context.session, mechanism, key);
      // SoftHSM 2.6.1 needs room for the whole input, tag included, and otherwise returns
      // CKR_BUFFER_TOO_SMALL.
      const output = Buffer.alloc(body.length);
      try {
        const opened = context.calls.C_Decrypt(context.session, toBuffer(body), output);
        return Uint8Array.from(opened);
      } catch (error) {
        const code = ckrName(error);
        if (code !== null && BLOB_REJECTED.has(code)) throw new BlobRejected(error);
        throw error;
      } finally {
        output.fill(0);
      }
    });
  }

  /** Logs in; maps a refused PIN to UNSEAL_FAILED (counted) and an unreachable token to 503. */
  #login(pin: Uint8Array, ceremony?: PinCeremony): void {
    try {
      this.#token.login(pin);
    } catch (error) {
      if (error instanceof Pkcs11TokenError && error.ckr !== null && PIN_ERRORS.has(error.ckr)) {
        if (ceremony === undefined) this.#limiter.recordFailure();
        else this.#failCeremony(ceremony);
        throw pinRejected(this.#token.tokenLabel, error);
      }
      throw this.#tokenFailure(error, "log in");
    }
  }

  /**
   * Checks right after the unseal login that every key the provider uses is on the token. The
   * current root version's key must have a root key's attributes, and the public half of the
   * checkpoint key pair must equal the stored one.
   */
  #verifyAfterLogin(stored: StoredPkcs11Root): void {
    const current = this.#versionRecord(stored.latestVersion, stored)!;
    const tokenLabel = this.#token.tokenLabel;
    const publicJwk = this.#call("unseal", (context) => {
      verifyRootKey(context, current, tokenLabel);
      findCheckpointPrivateKey(context, stored.record);
      return readCheckpointPublicKey(context, stored.record);
    });

    if (publicJwk.x !== stored.record.checkpointPublicJwk.x) {
      throw new ArborError(
        "STORED_KEY_CORRUPT",
        `the stored audit checkpoint public key differs from the one on PKCS#11 token ${tokenLabel}: the database or the token was changed`,
      );
    }
    this.#checkpointPublicJwk = { ...stored.record.checkpointPublicJwk };

    const serial = this.#token.serialNumber;
    if (serial !== null && serial !== stored.record.tokenSerial) {
      this.#logger.warn(
        { tokenLabel, storedSerial: stored.record.tokenSerial, tokenSerial: serial },
        "PKCS#11 token serial number differs from the one recorded at initialization; the keys were found by label",
      );
    }
  }

  /** Run after every re-connect: the current root key must be reachable again. */
  #probe(context: SessionContext): void {
    const version = this.#currentVersion;
    const record = version === null ? undefined : this.#versionRecord(version);
    if (record !== undefined) findRootKey(context, record);
  }

  /** Like `#call`, but destroys the objects in `generated` when the work fails. */
  #callOrDestroy<T>(
    generated: Pkcs11Handle[],
    what: string,
    work: (context: SessionContext) => T,
  ): T {
    try {
      return this.#call(what, work);
    } catch (error) {
      this.#destroyUnused(generated);
      throw error;
    }
  }

  /** Runs token work and turns token failures into ArborErrors naming `what`. */
  #call<T>(what: string, work: (context: SessionContext) => T): T {
    try {
      return this.#token.run(what, work);
    } catch (error) {
      throw this.#tokenFailure(error, what);
    }
  }

  /** Opens root versions that appeared in the store since this node loaded it. */
  async #loadNewVersions(): Promise<void> {
    const loaded = await this.#store.load();
    if (loaded === null) return;
    this.#stored = validateStoredPkcs11Root(loaded);
    if (this.#currentVersion !== null && this.#token.state !== "logged-out") {
      this.#currentVersion = Math.max(this.#currentVersion, this.#stored.latestVersion);
    }
  }

  #versionRecord(
    version: number,
    stored: StoredPkcs11Root | null = this.#stored,
  ): Pkcs11RootVersionRecord | undefined {
    return stored?.versions.find((record) => record.version === version);
  }

  #destroyUnused(handles: Pkcs11Handle[]): void {
    if (handles.length === 0 || this.#token.state !== "ready") return;
    try {
      this.#token.run("C_DestroyObject", (context) => {
        for (const handle of handles) destroyQuietly(context, handle);
      });
    } catch {
      // Unused objects with random labels may stay on the token; they protect nothing.
    }
  }

  /**
   * The current root version while unsealed. The token logs itself out when it refuses the kept
   * PIN during a re-connect; the provider is then sealed too.
   */
  #liveVersion(): number | null {
    if (this.#currentVersion !== null && this.#token.state === "logged-out") {
      this.#currentVersion = null;
    }
    return this.#currentVersion;
  }

  #requireUnsealed(): number {
    this.#requireInitialized();
    const current = this.#liveVersion();
    if (current === null) {
      throw new ArborError("SEALED", "the root is sealed: unseal it with the token's PIN first");
    }
    return current;
  }

  #requireSealed(): void {
    if (this.#liveVersion() !== null) {
      throw new ArborError("ALREADY_UNSEALED", "the root is already unsealed");
    }
  }

  #requireInitialized(): StoredPkcs11Root {
    if (this.#stored === null) {
      throw new ArborError(
        "NOT_INITIALIZED",
        "the PKCS#11 root is not initialized: run initialization first to create the root key on the token",
      );
    }
    return this.#stored;
  }

  async #requireNotInitialized(): Promise<void> {
    if (this.#stored === null) {
      // Another node may have initialized the shared store since this one loaded it.
      const loaded = await this.#store.load();
      if (loaded !== null) this.#stored = validateStoredPkcs11Root(loaded);
    }
    if (this.#stored !== null) {
      throw new ArborError(
        "ALREADY_INITIALIZED",
        "the PKCS#11 root is already initialized: unseal it with the token's PIN",
      );
    }
  }

  #requireCeremony(nonce: string): PinCeremony {
    this.#expireCeremony();
    const ceremony = this.#ceremony;
    if (ceremony === null) {
      throw new ArborError(
        "CEREMONY_NOT_FOUND",
        "no unseal ceremony is in progress: start one with beginUnseal and submit its nonce",
      );
    }
    if (!ceremony.matches(nonce)) {
      throw new ArborError(
        "CEREMONY_NONCE_MISMATCH",
        "the nonce does not match the unseal ceremony in progress: fetch the current nonce from the unseal status and submit again",
        { parameter: "nonce" },
      );
    }
    return ceremony;
  }

  #failCeremony(ceremony: PinCeremony): void {
    this.#limiter.recordFailure();
    if (this.#ceremony === ceremony) this.#ceremony = null;
  }

  #expireCeremony(): void {
    const ceremony = this.#ceremony;
    if (ceremony === null) return;
    if (this.#clock.now() - ceremony.startedAt >= this.#ceremonyTimeoutMs) this.#ceremony = null;
  }

  /**
   * STORED_KEY_CORRUPT (500) for a blob that fails to unwrap, with an error log naming the root
   * version. The caller (the hierarchy) adds the key and version the blob belongs to.
   */
  #blobCorrupt(rootVersion: number, reason: string, cause?: unknown): ArborError {
    this.#logger.error(
      { tokenLabel: this.#token.tokenLabel, rootVersion, reason, ckr: ckrName(cause) },
      "stored blob failed to unwrap under the PKCS#11 root",
    );
    return new ArborError(
      "STORED_KEY_CORRUPT",
      `stored blob under root version ${String(rootVersion)} failed to unwrap: ${reason}`,
      {},
      { cause },
    );
  }

  /** ROOT_UNAVAILABLE (503) for token failures; other errors pass through unchanged. */
  #tokenFailure(error: unknown, what: string): unknown {
    if (!(error instanceof Pkcs11TokenError)) return error;
    return new ArborError(
      "ROOT_UNAVAILABLE",
      `the root could not ${what}: ${error.message}`,
      {},
      { cause: error },
    );
  }

  #exclusive<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(operation);
    this.#queue = result.catch(() => undefined);
    return result;
  }
}

/** A C_Decrypt failure caused by the blob itself; carries the PKCS#11 error as its cause. */
class BlobRejected extends Error {
  constructor(cause: unknown) {
    super("the token rejected the blob", { cause });
  }
}

function pinRejected(tokenLabel: string, error: Pkcs11TokenError): ArborError {
  const locked = error.ckr === "CKR_PIN_LOCKED";
  return new ArborError(
    "UNSEAL_FAILED",
    locked
      ? `unseal failed: the user PIN of PKCS#11 token ${tokenLabel} is locked; unlock it with the security officer PIN, then start a new ceremony`
      : `unseal failed: PKCS#11 token ${tokenLabel} refused the PIN (${error.ckr}). The ceremony was reset: start a new one`,
    {},
    { cause: error },
  );
}

/** Runs a synchronous operation as a promise, turning a thrown error into a rejection. */
function promiseOf<T>(operation: () => T): Promise<T> {
  return new Promise<T>((resolve) => resolve(operation()));
}
