import type { JsonWebKey } from "node:crypto";

/**
 * The root-of-trust contract. A provider holds the root key and never releases it: callers hand it
 * plaintext key material to wrap and blobs to unwrap, always with the AAD that binds the blob to its
 * place in the tree.
 */
export type RootState = "uninitialized" | "sealed" | "unsealed" | "unavailable";

export interface RootStatus {
  state: RootState;
  provider: "sealed" | "pkcs11";
  /** Current root version used for new wraps; null until initialised. */
  rootVersion: number | null;
  /**
   * Secrets an unseal needs (shares for the sealed root), known once initialised even while no
   * ceremony runs; null when uninitialised. Optional so providers without shares may omit it.
   */
  threshold?: number | null;
  /** Unseal ceremony in progress, if any. */
  ceremony: { nonce: string; progress: number; threshold: number } | null;
}

/** A blob wrapped by the root: the root version that wrapped it and the ciphertext. */
export interface WrappedBlob {
  rootVersion: number;
  ciphertext: Uint8Array;
}

export interface Ceremony {
  /** Random nonce every submission must quote; a new ceremony gets a new nonce. */
  nonce: string;
  threshold: number;
  progress: number;
}

export interface UnsealProgress {
  nonce: string;
  threshold: number;
  progress: number;
  /** True once the root is unsealed; the ceremony is then over. */
  unsealed: boolean;
}

export interface RootVersion {
  version: number;
  createdAt: number;
}

/** Result of `initialize`, returned once: the unseal shares (base64) for the share holders. */
export interface InitializeResult {
  shares: string[];
  threshold: number;
  rootVersion: number;
}

export interface InitializeOptions {
  /** Number of unseal shares to issue, 2 to 255. Default 5. */
  shares?: number;
  /** Shares needed to unseal, 2 to `shares`. Default 3. */
  threshold?: number;
}

export interface RootProvider {
  status(): RootStatus;
  /** Starts an unseal ceremony, or returns the one in progress. */
  beginUnseal(): Ceremony;
  /** Submits one share (sealed) or the PIN (pkcs11) to the ceremony named by its nonce. */
  submit(ceremonyNonce: string, secret: Uint8Array): Promise<UnsealProgress>;
  /** Cancels the ceremony in progress; submitted shares are zeroed. */
  cancelUnseal(): void;
  /** Zeroes every key and share in the provider and returns to `sealed`. */
  seal(): void;
  /** Encrypts under the current root version; rejects with SEALED while sealed. */
  wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<WrappedBlob>;
  /**
   * Decrypts a blob from `wrap` with the same AAD and returns a fresh buffer the caller zeroes.
   * Blobs come from Arbor's own storage, so any failure (unknown root version, wrong AAD, modified
   * blob) is server-side corruption: STORED_KEY_CORRUPT (500), never the client-facing
   * DECRYPTION_FAILED. Rejects with SEALED while sealed.
   */
  unwrap(blob: WrappedBlob, aad: Uint8Array): Promise<Uint8Array>;
  /** Creates the next root version and makes it current for new wraps; old versions still unwrap. */
  rotate(): Promise<RootVersion>;
  /** Signs an audit checkpoint digest with the audit signing key under the root (Ed25519). */
  signCheckpoint(digest: Uint8Array): Promise<Uint8Array>;
  /** Public key that verifies checkpoint signatures, as an Ed25519 JWK. */
  checkpointPublicKey(): Promise<JsonWebKey>;
}

/** The Shamir-sealed software provider: a `RootProvider` that can also create its root. */
export interface SealedRootProvider extends RootProvider {
  /**
   * Creates root version 1 and the unseal key, stores the sealed root and returns the unseal
   * shares, which are never available again. The provider stays sealed afterwards.
   */
  initialize(options?: InitializeOptions): Promise<InitializeResult>;
}

/** Persisted state of the sealed provider: nothing here is secret without a threshold of shares. */
export interface SealedRootRecord {
  shares: number;
  threshold: number;
  /** Check value derived from the unseal key; verified after combining shares. */
  checkValue: Uint8Array;
  createdAt: number;
}

export interface SealedRootVersionRecord {
  version: number;
  /** The root key of this version, AES-256-GCM sealed under the unseal key. */
  sealedKey: Uint8Array;
  createdAt: number;
}

/** Storage the sealed provider needs; the SQL implementation lives in `src/storage`. */
export interface SealedRootStore {
  load(): Promise<{ record: SealedRootRecord; versions: SealedRootVersionRecord[] } | null>;
  /**
   * Writes the record and its first version atomically. Rejects with ALREADY_INITIALIZED if a
   * record already exists, so two nodes initializing at once cannot both succeed.
   */
  create(record: SealedRootRecord, first: SealedRootVersionRecord): Promise<void>;
  /**
   * Adds one root version. Rejects (CONCURRENT_UPDATE) if that version number already exists, so
   * two nodes rotating at once cannot both store the same version.
   */
  addVersion(version: SealedRootVersionRecord): Promise<void>;
}
