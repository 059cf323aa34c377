import type { SigningAlgorithm } from "../crypto/index.ts";

/**
 * A request's sender when it authenticated with client credentials or with an Arbor access token.
 * It reaches only its own service's keys (see `service-scope.ts`).
 */
export interface ServicePrincipal {
  type: "service";
  /** The principal's id and OAuth `client_id` (`svc_...`). */
  id: string;
  environment: string;
  /** `-` for an environment-level service. */
  tenant: string;
  service: string;
  readOnly: false;
  root: false;
  /** The `jti` of the access token the request carried; null for client credentials. */
  tokenId: string | null;
}

/** A service principal as the API shows it; the secrets' hashes are never part of it. */
export interface ServicePrincipalInfo {
  id: string;
  name: string;
  environment: string;
  tenant: string;
  service: string;
  signKeyId: string;
  signKeyPath: string;
  /** The issuer URL of the master directly above the sign key. */
  issuer: string;
  scopes: string[];
  audiences: string[];
  maxTokenTtlMs: number;
  createdAt: number;
  secrets: ClientSecretInfo[];
}

export interface ClientSecretInfo {
  id: string;
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
}

export interface CreateServicePrincipalInput {
  /** 1 to 64 characters, no control characters, not only spaces. */
  name: string;
  environment: string;
  /** Omitted, null or `-` for an environment-level service. */
  tenant?: string | null;
  service: string;
  /** Scope values the principal may request; default none. */
  scopes?: string[];
  /** Audiences the principal may request; at least one. */
  audiences: string[];
  /** Maximum token lifetime in milliseconds; the token service sets the default and the ceiling. */
  maxTokenTtlMs?: number;
}

/** The claims of an Arbor access token (RFC 9068 and Arbor's `env` and `tenant`). */
export interface AccessTokenClaims {
  iss: string;
  sub: string;
  client_id: string;
  aud: string | string[];
  /** Seconds since the Unix epoch, like `iat` and `nbf`. */
  exp: number;
  iat: number;
  nbf: number;
  jti: string;
  scope?: string;
  env: string;
  tenant: string;
}

/** The protected header of an Arbor access token. */
export interface AccessTokenHeader {
  alg: SigningAlgorithm;
  typ: "at+jwt";
  /** `<key id>.<version>`: opaque, no names. */
  kid: string;
}

/**
 * Reason a token was rejected. The values are the `reason` label of
 * `arbor_token_validation_failures_total` and the `reason` of `token.rejected` events, so the set
 * is closed.
 */
export type RejectionReason =
  | "too_large"
  | "malformed"
  | "unsupported_alg"
  | "unsupported_typ"
  | "unsupported_header"
  | "unknown_kid"
  | "alg_mismatch"
  | "key_unusable"
  | "bad_signature"
  | "bad_claims"
  | "issuer_mismatch"
  | "audience_mismatch"
  | "expired"
  | "not_yet_valid"
  | "issued_in_future"
  | "unknown_client"
  | "client_mismatch"
  | "revoked"
  | "out_of_scope";

/** A rejected token; only its `kid` and `jti` (when readable) are kept, never its contents. */
export interface TokenRejection {
  reason: RejectionReason;
  kid: string | null;
  jti: string | null;
}
