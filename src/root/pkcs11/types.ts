import type { JsonWebKey } from "node:crypto";

import type { InitializeResult, RootProvider } from "../types.ts";

/**
 * Persisted state of the PKCS#11 provider. It names the token objects and contains no secret,
 * because the keys never leave the token and the PIN is never stored.
 */
export interface Pkcs11RootRecord {
  /** Label of the token the keys were created on; the provider finds the token by it. */
  tokenLabel: string;
  /** Serial number of that token at initialization, kept to diagnose a replaced token. */
  tokenSerial: string;
  /** CKA_LABEL and CKA_ID shared by the audit checkpoint key pair (Ed25519). */
  checkpointKeyLabel: string;
  checkpointKeyId: Uint8Array;
  /** Public half of the checkpoint key, compared with the token's copy at unseal. */
  checkpointPublicJwk: JsonWebKey;
  createdAt: number;
}

export interface Pkcs11RootVersionRecord {
  version: number;
  /** CKA_LABEL of the AES-256 root key of this version. */
  keyLabel: string;
  /** CKA_ID of that key; empty for an adopted key without one. */
  keyId: Uint8Array;
  /** True when initialization adopted an existing key instead of generating one. */
  adopted: boolean;
  createdAt: number;
  /** When the key's CKA_ENCRYPT and CKA_DECRYPT were set false after a root rotation. */
  disabledAt: number | null;
}

/** Storage the PKCS#11 provider needs; the SQL implementation lives in `src/storage`. */
export interface Pkcs11RootStore {
  load(): Promise<{ record: Pkcs11RootRecord; versions: Pkcs11RootVersionRecord[] } | null>;
  /** Writes the record and version 1 atomically; ALREADY_INITIALIZED if a record exists. */
  create(record: Pkcs11RootRecord, first: Pkcs11RootVersionRecord): Promise<void>;
  /** Adds one version; CONCURRENT_UPDATE if that version number already exists. */
  addVersion(version: Pkcs11RootVersionRecord): Promise<void>;
  /** Records that a version was disabled; a version already disabled keeps its first time. */
  markDisabled(version: number, at: number): Promise<void>;
}

export interface Pkcs11InitializeOptions {
  /**
   * The user PIN. When omitted, the configured PIN source is read (`ARBOR_PKCS11_PIN` or the
   * PIN file). The caller zeroes its buffer; the provider keeps no copy after initialization.
   */
  pin?: Uint8Array;
  /**
   * CKA_LABEL of an existing AES-256 key to adopt as root version 1 instead of generating one. It
   * must be sensitive, never extractable and usable only for encrypt and decrypt.
   */
  adoptKeyLabel?: string;
}

/** Result of initializing the PKCS#11 root. It has no shares, because the PIN unseals. */
export interface Pkcs11InitializeResult extends InitializeResult {
  shares: [];
  threshold: 1;
  tokenLabel: string;
  /** CKA_LABEL of root version 1. */
  keyLabel: string;
  adopted: boolean;
  checkpointKeyLabel: string;
}

/** Administrative state of one root version, for operators and the rotation tool. */
export interface Pkcs11RootVersionInfo {
  version: number;
  keyLabel: string;
  adopted: boolean;
  createdAt: number;
  disabledAt: number | null;
}

/** The PKCS#11 provider: a `RootProvider` that can also create, list and disable root versions. */
export interface Pkcs11RootProvider extends RootProvider {
  /**
   * Logs in, generates (or adopts) root version 1 and generates the checkpoint key pair on the
   * token, stores their labels, and logs out again. The provider stays sealed afterwards.
   */
  initialize(options?: Pkcs11InitializeOptions): Promise<Pkcs11InitializeResult>;
  /**
   * Runs a whole unseal with the configured PIN source. Returns false, and does nothing, when no
   * source is configured (neither `ARBOR_PKCS11_PIN` nor a PIN file).
   */
  unsealWithConfiguredPin(): Promise<boolean>;
  /** Stored root versions, ascending. */
  listVersions(): Promise<Pkcs11RootVersionInfo[]>;
  /**
   * Sets CKA_ENCRYPT and CKA_DECRYPT false on an old root version's key, so blobs under it no
   * longer open; the key itself is kept, never destroyed. Rejects the current version with
   * KEY_STATE_CONFLICT. Disabling a disabled version does nothing.
   */
  disableVersion(version: number): Promise<void>;
  /** Logs out and releases every session; call when the process stops. */
  close(): void;
}
