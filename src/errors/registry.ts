/**
 * The registry of stable error codes. Each code keeps its HTTP status and its RFC 6749 error name
 * for the OAuth endpoints. Codes are a public contract: a retired code is never reused, and
 * `docs/errors.md` lists exactly these codes (a test compares the two).
 */
export const errorRegistry = {
  INVALID_ARGUMENT: { status: 400, oauth: "invalid_request" },
  INVALID_PATH: { status: 400, oauth: "invalid_request" },
  UNSUPPORTED_FIELD: { status: 400, oauth: "invalid_request" },
  PAYLOAD_TOO_LARGE: { status: 413, oauth: "invalid_request" },
  DECRYPTION_FAILED: { status: 400, oauth: "invalid_request" },
  INVALID_SECRET: { status: 400, oauth: "invalid_request" },
  UNAUTHENTICATED: { status: 401, oauth: "invalid_client" },
  FORBIDDEN: { status: 403, oauth: "access_denied" },
  KEY_NOT_FOUND: { status: 404, oauth: "invalid_request" },
  KEY_VERSION_NOT_FOUND: { status: 404, oauth: "invalid_request" },
  NOT_FOUND: { status: 404, oauth: "invalid_request" },
  PATH_IN_USE: { status: 409, oauth: "invalid_request" },
  KEY_STATE_CONFLICT: { status: 409, oauth: "invalid_request" },
  PURPOSE_MISMATCH: { status: 400, oauth: "invalid_request" },
  SCOPE_MISMATCH: { status: 400, oauth: "invalid_request" },
  CONCURRENT_UPDATE: { status: 409, oauth: "temporarily_unavailable" },
  ALREADY_INITIALIZED: { status: 409, oauth: "invalid_request" },
  NOT_INITIALIZED: { status: 501, oauth: "temporarily_unavailable" },
  NOT_IMPLEMENTED: { status: 501, oauth: "server_error" },
  SEALED: { status: 503, oauth: "temporarily_unavailable" },
  ALREADY_UNSEALED: { status: 409, oauth: "invalid_request" },
  CEREMONY_NOT_FOUND: { status: 400, oauth: "invalid_request" },
  CEREMONY_NONCE_MISMATCH: { status: 400, oauth: "invalid_request" },
  INVALID_SHARE: { status: 400, oauth: "invalid_request" },
  UNSEAL_FAILED: { status: 400, oauth: "invalid_request" },
  RATE_LIMITED: { status: 429, oauth: "slow_down" },
  ROOT_UNAVAILABLE: { status: 503, oauth: "temporarily_unavailable" },
  STORED_KEY_CORRUPT: { status: 500, oauth: "server_error" },
  STORAGE_UNAVAILABLE: { status: 503, oauth: "temporarily_unavailable" },
  AUDIT_UNAVAILABLE: { status: 503, oauth: "temporarily_unavailable" },
  AUDIT_PROOF_UNAVAILABLE: { status: 409, oauth: "invalid_request" },
  AUDIT_EXPORT_PENDING: { status: 409, oauth: "invalid_request" },
  INVALID_GRANT: { status: 400, oauth: "invalid_grant" },
  UNSUPPORTED_GRANT_TYPE: { status: 400, oauth: "unsupported_grant_type" },
  INVALID_SCOPE: { status: 400, oauth: "invalid_scope" },
  INVALID_TARGET: { status: 400, oauth: "invalid_target" },
  UNAUTHORIZED_CLIENT: { status: 400, oauth: "unauthorized_client" },
  INVALID_POLICY: { status: 400, oauth: "invalid_request" },
  INTERNAL: { status: 500, oauth: "server_error" },
} as const satisfies Record<string, { status: number; oauth: string }>;

/** Every stable error code, as a union so callers can `switch` on it exhaustively. */
export type ErrorCode = keyof typeof errorRegistry;

export const errorCodes = Object.keys(errorRegistry) as ErrorCode[];

export function statusOf(code: ErrorCode): number {
  return errorRegistry[code].status;
}
