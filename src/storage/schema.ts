import type { Generated, Kysely, Transaction } from "kysely";

/**
 * Table types for Kysely. Timestamps are integer milliseconds since the Unix epoch taken from the
 * injected clock, never database defaults. Booleans are stored as 0 or 1 so both dialects agree.
 */
export interface Database {
  keys: KeysTable;
  key_versions: KeyVersionsTable;
  sealed_root: SealedRootTable;
  sealed_root_versions: SealedRootVersionsTable;
  pkcs11_root: Pkcs11RootTable;
  pkcs11_root_versions: Pkcs11RootVersionsTable;
  outbox: OutboxTable;
  issuances: IssuancesTable;
  audit_events: AuditEventsTable;
  audit_checkpoints: AuditCheckpointsTable;
  audit_export_cursors: AuditExportCursorsTable;
  audit_keys: AuditKeysTable;
  audit_anchor: AuditAnchorTable;
  operator_tokens: OperatorTokensTable;
  service_principals: ServicePrincipalsTable;
  client_secrets: ClientSecretsTable;
  revoked_tokens: RevokedTokensTable;
}

export type KeyKind = "master" | "service";
export type KeyPurpose = "wrap" | "encrypt" | "sign";
export type KeyAlgorithm = "AES-256-GCM" | "EdDSA" | "ES256";
export type KeyMode = "wrapped" | "derived";
export type VersionState = "pending" | "primary" | "active" | "disabled" | "revoked" | "destroyed";

/** Tenant value of environment-level keys, so the attribute always exists. */
export const NO_TENANT = "-";

export interface KeysTable {
  id: string;
  path: string;
  kind: KeyKind;
  environment: string;
  tenant: string;
  /** Service name for service keys; `-` for masters. */
  service: string;
  purpose: KeyPurpose;
  algorithm: KeyAlgorithm;
  mode: KeyMode;
  /** Null only for environment masters, whose parent is the root. */
  parent_id: string | null;
  /** The parent's tenant and kind, repeated so a composite foreign key can check them. */
  parent_tenant: string | null;
  parent_kind: KeyKind | null;
  min_decryption_version: number;
  /** Automatic rotation period in milliseconds; null when rotation is manual. */
  rotation_period_ms: number | null;
  created_at: number;
}

export interface KeyVersionsTable {
  key_id: string;
  version: number;
  state: VersionState;
  /** Wrapped key material (mode `wrapped`); null for derived versions and after destruction. */
  material: Uint8Array | null;
  /** Random HKDF salt of a derived version; null for wrapped versions. */
  salt: Uint8Array | null;
  /** Public JWK (JSON) of a `sign` version. */
  public_jwk: string | null;
  /** The key version that wrapped or derived this one; null when the root wrapped it. */
  parent_key_id: string | null;
  /** Version of `parent_key_id`, or the root version when the root wrapped it. */
  parent_version: number;
  created_at: number;
  /** When a pending version becomes primary (after the publish delay). */
  activate_at: number | null;
  /** When a `sign` version leaves the JWKS and is disabled automatically. */
  retire_at: number | null;
  updated_at: number;
}

export interface SealedRootTable {
  id: number;
  shares: number;
  threshold: number;
  check_value: Uint8Array;
  created_at: number;
}

export interface SealedRootVersionsTable {
  version: number;
  sealed_key: Uint8Array;
  created_at: number;
}

export interface Pkcs11RootTable {
  id: number;
  token_label: string;
  token_serial: string;
  checkpoint_key_label: string;
  /** CKA_ID shared by the checkpoint key pair's public and private objects. */
  checkpoint_key_id: Uint8Array;
  /** Ed25519 public JWK (JSON) of the checkpoint key. */
  checkpoint_public_jwk: string;
  created_at: number;
}

export interface Pkcs11RootVersionsTable {
  version: number;
  /** CKA_LABEL of the root key of this version. */
  key_label: string;
  /** CKA_ID of that key; empty for an adopted key without one. */
  key_id: Uint8Array;
  /** 1 when initialization adopted an existing key. */
  adopted: number;
  created_at: number;
  /** Null while the key may encrypt and decrypt. */
  disabled_at: number | null;
}

export interface OutboxTable {
  id: Generated<number>;
  topic: string;
  /** JSON document describing the change; never contains secrets or key material. */
  payload: string;
  created_at: number;
}

export type IssuanceKind = "token" | "data_key" | "lease" | "certificate";

export interface IssuancesTable {
  /** Credential id: a token's `jti`, a data key id, a lease id or a certificate serial. */
  id: string;
  kind: IssuanceKind;
  key_id: string;
  key_version: number;
  principal: string;
  issued_at: number;
  /** Null for credentials without an expiry (data keys). */
  expires_at: number | null;
  revoked_at: number | null;
}

export interface OperatorTokensTable {
  /** Public id: `opt_` followed by 26 base32 characters. */
  id: string;
  /** SHA-256 of the whole secret string (32 bytes); the secret itself is never stored. */
  secret_hash: Uint8Array;
  name: string;
  /** Null for a token that reaches every environment. */
  environment: string | null;
  /** Null for a token that reaches every tenant of its environment. */
  tenant: string | null;
  read_only: number;
  is_root: number;
  created_at: number;
  /** Null only for root tokens. */
  expires_at: number | null;
  revoked_at: number | null;
  /** Id of the token that created this one; null for root tokens. */
  created_by: string | null;
}

/** A database handle or an open transaction; every repository method accepts either. */
export type Executor = Kysely<Database> | Transaction<Database>;

export interface AuditEventsTable {
  seq: Generated<number>;
  type: string;
  outcome: string;
  at: number;
  principal_type: string;
  principal_id: string;
  source_address: string | null;
  request_id: string | null;
  key_id: string | null;
  key_version: number | null;
  credential_id: string | null;
  /** JSON array of `key_id@version`, root first. */
  chain: string;
  error_code: string | null;
  /** JSON object of event-specific fields; never secrets. */
  details: string;
  /** Hash of the previous record (lowercase hex), or the genesis or anchor hash. */
  prev_hash: string | null;
  /** RFC 9162 leaf hash of `record` (lowercase hex). */
  hash: string | null;
  /** The record's RFC 8785 canonical JSON: the bytes that are hashed and exported. */
  record: string | null;
}

/** A signed tree head over the first `tree_size` records. */
export interface AuditCheckpointsTable {
  tree_size: number;
  prev_tree_size: number;
  root_hash: string;
  at: number;
  /** The signed checkpoint, `{body, signature}` JSON, exactly as exported. */
  signed: string;
}

export interface AuditExportCursorsTable {
  exporter: string;
  /** Highest sequence number the exporter's target acknowledged. */
  seq: number;
  updated_at: number;
}

/** The audit HMAC key, wrapped by the root; one row. */
export interface AuditKeysTable {
  id: number;
  root_version: number;
  wrapped: Uint8Array;
  created_at: number;
}

/** What retention pruned: enough to keep verifying the records that remain; one row. */
export interface AuditAnchorTable {
  id: number;
  pruned_through: number;
  last_hash: string;
  /** JSON of the Merkle frontier over the pruned prefix. */
  frontier: string;
  at: number;
}

/** An OAuth client of one service, which obtains access tokens signed by the service's sign key. */
export interface ServicePrincipalsTable {
  /** Public id and OAuth `client_id`: `svc_` followed by 26 base32 characters. */
  id: string;
  name: string;
  environment: string;
  /** `-` for an environment-level service. */
  tenant: string;
  service: string;
  /** The service's `sign` key; the composite foreign key ties it to the same scope. */
  sign_key_id: string;
  /** Always `service`; stored so the composite foreign key can check the key's kind. */
  sign_key_kind: "service";
  /** JSON array of the scope values the principal may request. */
  scopes: string;
  /** JSON array of the audiences (`aud` values) the principal may request. */
  audiences: string;
  max_token_ttl_ms: number;
  created_at: number;
}

export interface ClientSecretsTable {
  /** Public id: `sec_` followed by 26 base32 characters. */
  id: string;
  principal_id: string;
  /** SHA-256 of the whole secret string (32 bytes); the secret itself is never stored. */
  secret_hash: Uint8Array;
  created_at: number;
  /** Null while the secret has no end; set when a rotation gives it an overlap period. */
  expires_at: number | null;
  revoked_at: number | null;
}

/** Access tokens revoked before their expiry, kept until `expires_at` and then pruned. */
export interface RevokedTokensTable {
  jti: string;
  principal_id: string;
  key_id: string;
  key_version: number;
  /** The token's `exp` in milliseconds. */
  expires_at: number;
  revoked_at: number;
}
