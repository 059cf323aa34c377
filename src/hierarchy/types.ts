import type { Transaction } from "kysely";

import type { Clock } from "../clock.ts";
import type { RootProvider } from "../root/types.ts";
import type {
  Database,
  KeyAlgorithm,
  KeyKind,
  KeyMode,
  KeyPurpose,
  VersionState,
} from "../storage/schema.ts";
import type { Storage } from "../storage/storage.ts";
import type { MaterialCache } from "./material-cache.ts";

export interface VersionInfo {
  version: number;
  state: VersionState;
  /** Key id of the wrapping (or deriving) parent version; `root` for environment masters. */
  parentKeyId: string;
  parentVersion: number;
  createdAt: number;
  activateAt: number | null;
  retireAt: number | null;
  /** Public JWK of a `sign` version; null otherwise. */
  publicJwk: Record<string, unknown> | null;
}

export interface KeyInfo {
  id: string;
  path: string;
  kind: KeyKind;
  environment: string;
  tenant: string;
  service: string;
  purpose: KeyPurpose;
  algorithm: KeyAlgorithm;
  mode: KeyMode;
  parentId: string | null;
  minDecryptionVersion: number;
  rotationPeriodMs: number | null;
  primaryVersion: number | null;
  createdAt: number;
  versions: VersionInfo[];
}

export interface TreeNode {
  id: string;
  path: string;
  kind: KeyKind;
  purpose: KeyPurpose;
  primaryVersion: number | null;
  children: TreeNode[];
}

/** A state change of the tree, reported inside the transaction that makes it. */
export interface KeyChange {
  type:
    | "key.created"
    | "key.rotated"
    | "key.version_promoted"
    | "key.version_disabled"
    | "key.version_enabled"
    | "key.version_revoked"
    | "key.min_decryption_version_set";
  keyId: string;
  path: string;
  version: number | null;
  parentKeyId: string | null;
  parentVersion: number | null;
  at: number;
}

/** The minimal logger the tree needs; pino satisfies it. */
export interface TreeLogger {
  error(details: Record<string, unknown>, message: string): void;
  warn(details: Record<string, unknown>, message: string): void;
}

export interface KeyTreeDeps {
  storage: Storage;
  root: RootProvider;
  clock: Clock;
  cache: MaterialCache;
  logger: TreeLogger;
  /** Called inside each change's transaction (the audit writer plugs in here). */
  onChange?: (trx: Transaction<Database>, change: KeyChange) => Promise<void>;
  /**
   * How long a `sign` version stays published after it stops being primary: the maximum token
   * TTL plus a margin, in milliseconds. Defaults to 15 minutes plus 5 minutes.
   */
  signRetireAfterMs?: number;
}

export interface CreateKeyOptions {
  /** For `sign` keys: EdDSA (Ed25519, default) or ES256. */
  algorithm?: "EdDSA" | "ES256";
  /** For `encrypt` keys: `wrapped` (default) or `derived`. */
  mode?: KeyMode;
  rotationPeriodMs?: number | null;
}

export interface RotateOptions {
  /**
   * Milliseconds the new version stays `pending` before it becomes primary. Signing keys use this
   * so verifiers fetch the new public key before the first token signed with it. Default 0.
   */
  publishDelayMs?: number;
}
