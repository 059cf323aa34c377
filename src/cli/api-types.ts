/**
 * Shapes of the HTTP API's responses as the CLI reads them (see docs/api.md). Only the fields the
 * CLI prints are listed. `--json` output passes the server's response through unchanged.
 */

export interface SealStatus {
  initialized: boolean;
  sealed: boolean;
  provider: string;
  /** Root state; `unavailable` is an unreachable HSM, which no unseal fixes. */
  state?: "uninitialized" | "sealed" | "unsealed" | "unavailable";
  /** Shares needed, while an unseal ceremony is in progress; null otherwise. */
  threshold: number | null;
  progress: number;
  nonce: string | null;
}

export interface InitResponse {
  shares: string[];
  threshold: number;
  rootToken: string;
  rootTokenId?: string;
}

export interface UnsealResponse {
  sealed: boolean;
  threshold: number;
  progress: number;
  nonce: string | null;
}

export interface KeyVersion {
  version: number;
  state: string;
  parentKeyId: string;
  parentVersion: number;
  createdAt: string;
  activateAt?: string | null;
  retireAt?: string | null;
}

export interface Key {
  id: string;
  path: string;
  kind: string;
  environment: string;
  tenant: string;
  service?: string;
  purpose: string;
  algorithm?: string;
  mode?: string;
  parentId?: string | null;
  minDecryptionVersion?: number;
  rotationPeriod?: string | null;
  primaryVersion?: number | null;
  createdAt?: string;
  versions: KeyVersion[];
}

export interface TreeNode {
  id: string;
  path: string;
  kind: string;
  purpose: string;
  primaryVersion?: number | null;
  children: TreeNode[];
}

export interface DataKeyResponse {
  keyId: string;
  keyVersion: number;
  dataKeyId?: string;
  /** The plaintext data key, base64. */
  plaintext: string;
  /** `arbor:dk1:<base64url>`. */
  wrappedDataKey: string;
}

export interface DecryptedDataKeyResponse {
  keyId: string;
  keyVersion: number;
  plaintext: string;
}

export interface OperatorToken {
  id: string;
  name: string;
  environment: string | null;
  tenant: string | null;
  readOnly: boolean;
  root: boolean;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
}

export interface CreatedOperatorToken extends Partial<OperatorToken> {
  id: string;
  /** The secret, shown once. */
  token: string;
}

export interface ApplyResponse {
  plan: Array<{ action: string; path: string } & Record<string, unknown>>;
  drift: Array<{ path?: string; reason?: string } & Record<string, unknown>>;
  /** Whether the plan was carried out (false on a dry run). */
  applied?: boolean;
  /** Paths created by this call, when the server reports them. */
  created?: string[];
  unchanged?: number;
}
