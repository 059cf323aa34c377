/**
 * Audit events. Field names are a stable contract (renaming one is a breaking change), so every
 * event has the same top-level shape; type-specific details go in `details`. Secrets never
 * appear: a value that must be correlated without being revealed is HMAC'd by the writer.
 */
export type AuditOutcome = "success" | "failure" | "denied";

export type AuditEventType =
  | "sys.initialized"
  | "sys.unseal_attempted"
  | "sys.unsealed"
  | "sys.sealed"
  | "sys.unseal_cancelled"
  | "sys.root_rotated"
  | "auth.failed"
  | "authz.denied"
  | "authz.break_glass"
  | "policy.changed"
  | "key.created"
  | "key.rotated"
  | "key.version_promoted"
  | "key.version_disabled"
  | "key.version_enabled"
  | "key.version_revoked"
  | "key.min_decryption_version_set"
  | "key.version_rewrapped"
  | "crypto.encrypt"
  | "crypto.decrypt"
  | "crypto.rewrap"
  | "data_key.issued"
  | "data_key.decrypted"
  | "operator_token.created"
  | "operator_token.revoked"
  | "hierarchy.applied"
  | "service.created"
  | "service.secret_rotated"
  | "service.secret_revoked"
  | "token.issued"
  | "token.introspected"
  | "token.rejected"
  | "token.revoked"
  | "audit.checkpoint"
  | "audit.pruned";

export interface AuditPrincipal {
  /** `system` is Arbor itself: scheduled promotion and retirement, checkpoints, retention. */
  type: "operator" | "service" | "workload" | "anonymous" | "system";
  id: string;
}

export interface AuditEvent {
  type: AuditEventType;
  outcome: AuditOutcome;
  /** Integer milliseconds since the Unix epoch, from the injected clock. */
  at: number;
  principal: AuditPrincipal;
  sourceAddress: string | null;
  requestId: string | null;
  keyId: string | null;
  keyVersion: number | null;
  /**
   * Key versions from the root down to the one that acted, as `key_id@version` (root first). A
   * key change names one step: the parent version and the new version (`root@N` for masters).
   */
  chain: string[];
  /** The credential handed out or used (token id, data key id), never the credential itself. */
  credentialId: string | null;
  /** Stable error code when the outcome is not success. */
  errorCode: string | null;
  details: Record<string, string | number | boolean | null>;
}

/**
 * The durable audit writer. `write` resolves only once the event is durable; if it cannot be
 * written it rejects with AUDIT_UNAVAILABLE and the caller must not hand out the credential.
 */
export interface AuditWriter {
  write(event: AuditEvent): Promise<void>;
}
