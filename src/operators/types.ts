/** Where an operator token reaches. Null environment means every environment. */
export interface OperatorScope {
  environment: string | null;
  /** Null means every tenant of the environment (and its environment-level keys). */
  tenant: string | null;
  readOnly: boolean;
}

export interface OperatorTokenInfo extends OperatorScope {
  /** Public id (`opt_` + 26 base32 characters); never the secret. */
  id: string;
  name: string;
  /** True for the token made at init (or by the root-token ceremony). */
  root: boolean;
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
  /** Id of the token that created this one; null for the root token. */
  createdBy: string | null;
}

export interface CreateOperatorTokenInput {
  name: string;
  /** Lifetime in milliseconds; null for no expiry (allowed only for root tokens). */
  ttlMs: number | null;
  environment?: string | null;
  tenant?: string | null;
  readOnly?: boolean;
}

/** The authenticated operator behind a request. */
export interface OperatorPrincipal extends OperatorScope {
  type: "operator";
  id: string;
  root: boolean;
}

export interface OperatorTokenService {
  /** Creates the root token at init; fails if storage already has one that is not revoked. */
  createRootToken(): Promise<{ token: string; info: OperatorTokenInfo }>;
  /**
   * Creates a token on behalf of `creator`. A creator can only grant what it has: a scoped or
   * read-only creator is refused with FORBIDDEN.
   */
  create(
    creator: OperatorPrincipal,
    input: CreateOperatorTokenInput,
  ): Promise<{ token: string; info: OperatorTokenInfo }>;
  /**
   * Checks a presented secret: shape and checksum, then a SHA-256 look-up, then a constant-time
   * comparison. Unknown tokens do the same work as known ones. Throws UNAUTHENTICATED for any
   * failure (the message never says which check failed or quotes the secret).
   */
  authenticate(secret: string): Promise<OperatorPrincipal>;
  list(viewer: OperatorPrincipal): Promise<OperatorTokenInfo[]>;
  revoke(actor: OperatorPrincipal, id: string): Promise<OperatorTokenInfo>;
}
