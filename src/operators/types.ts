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
  /** 1 to 64 characters, no control characters, not only spaces. */
  name: string;
  /**
   * Lifetime in milliseconds, at most the service's maximum TTL. Omitted means the default TTL.
   * The token's expiry is then lowered to the creator's expiry if that comes first.
   */
  ttlMs?: number;
  /** Omitted means the creator's environment; null means every environment. */
  environment?: string | null;
  /**
   * Omitted means the creator's tenant when the new token stays in the creator's environment,
   * otherwise every tenant; null means every tenant.
   */
  tenant?: string | null;
  /** Default false. */
  readOnly?: boolean;
}

/** The authenticated operator behind a request. */
export interface OperatorPrincipal extends OperatorScope {
  type: "operator";
  id: string;
  root: boolean;
}

/**
 * Reason an authentication failed, attached as the `cause` of the UNAUTHENTICATED error for audit
 * events and server logs. Clients only ever see the shared message.
 */
export interface OperatorAuthenticationFailure {
  reason: "malformed" | "unknown" | "expired" | "revoked";
  /** Id of the matched token; null when no token matched. */
  tokenId: string | null;
}

export interface OperatorTokenService {
  /**
   * Creates the root token at init: unscoped, writable, without expiry. Fails with
   * ALREADY_INITIALIZED if storage already has a root token that is not revoked.
   */
  createRootToken(): Promise<{ token: string; info: OperatorTokenInfo }>;
  /**
   * Creates a token on behalf of `creator`, which can only grant what it has: a read-only creator
   * is refused, and a scoped creator can only create tokens inside its own environment and
   * tenant (FORBIDDEN otherwise). The new token never outlives its creator.
   */
  create(
    creator: OperatorPrincipal,
    input: CreateOperatorTokenInput,
  ): Promise<{ token: string; info: OperatorTokenInfo }>;
  /**
   * Checks a presented secret: shape and checksum, then a SHA-256 look-up, then a constant-time
   * comparison. Unknown tokens do the same work as known ones. Throws UNAUTHENTICATED for any
   * failure (the message names no failed check and never quotes the secret).
   */
  authenticate(secret: string): Promise<OperatorPrincipal>;
  /** Lists the tokens inside the viewer's scope, including expired and revoked ones. */
  list(viewer: OperatorPrincipal): Promise<OperatorTokenInfo[]>;
  /**
   * Revokes a token inside the actor's scope; a token outside it is NOT_FOUND. Revoking an
   * already revoked token returns it unchanged.
   */
  revoke(actor: OperatorPrincipal, id: string): Promise<OperatorTokenInfo>;
}
