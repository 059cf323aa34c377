import type { FastifyRequest } from "fastify";
import type { Logger } from "pino";

import type { AuditKey } from "../audit/audit-key.ts";
import type { Checkpointer } from "../audit/checkpointer.ts";
import type { CompletenessReport } from "../audit/completeness.ts";
import type { AuditLogStore } from "../audit/log-store.ts";
import type { PruneResult } from "../audit/retention.ts";
import type { AuditWriter } from "../audit/types.ts";
import type { Clock } from "../clock.ts";
import type { KeyScope, KeyTree } from "../hierarchy/index.ts";
import type { OperatorPrincipal, OperatorTokenService } from "../operators/types.ts";
import type { KeyFacts } from "../policy/entities.ts";
import type { PolicyAdministration } from "../policy/index.ts";
import type { InitializeResult, RootProvider } from "../root/types.ts";
import type { Storage } from "../storage/index.ts";
import type { ServicePrincipal, TokenService } from "../tokens/index.ts";
import type { ServerMetrics } from "./metrics.ts";

/** The caller of a public route, which presents no credential. */
export interface AnonymousPrincipal {
  type: "anonymous";
  id: "anonymous";
  environment: null;
  tenant: null;
  readOnly: true;
  root: false;
}

/** The sender of a request, as the authentication hook established it. */
export type Principal = OperatorPrincipal | ServicePrincipal | AnonymousPrincipal;

export const ANONYMOUS: AnonymousPrincipal = Object.freeze({
  type: "anonymous",
  id: "anonymous",
  environment: null,
  tenant: null,
  readOnly: true,
  root: false,
});

/** Envelope encryption as the HTTP routes use it; every call checks the caller's scope. */
export interface EnvelopeService {
  generateDataKey(
    keyRef: string,
    context: Record<string, string>,
    scope: KeyScope,
  ): Promise<{
    keyId: string;
    keyVersion: number;
    dataKeyId: string;
    plaintext: Uint8Array;
    wrappedDataKey: string;
    chain: string[];
  }>;
  decryptDataKey(
    wrappedDataKey: string,
    context: Record<string, string>,
    scope: KeyScope,
  ): Promise<{
    keyId: string;
    keyVersion: number;
    dataKeyId: string;
    plaintext: Uint8Array;
    chain: string[];
  }>;
  rewrapDataKey(
    wrappedDataKey: string,
    context: Record<string, string>,
    scope: KeyScope,
  ): Promise<{
    keyId: string;
    keyVersion: number;
    dataKeyId: string;
    wrappedDataKey: string;
    chain: string[];
  }>;
  encrypt(
    keyRef: string,
    plaintext: Uint8Array,
    context: Record<string, string>,
    scope: KeyScope,
  ): Promise<{ ciphertext: string; keyId: string; keyVersion: number; chain: string[] }>;
  decrypt(
    ciphertext: string,
    expectedContext: Record<string, string> | undefined,
    scope: KeyScope,
  ): Promise<{
    plaintext: Uint8Array;
    context: Record<string, string>;
    keyId: string;
    keyVersion: number;
    chain: string[];
  }>;
  rewrap(
    ciphertext: string,
    expectedContext: Record<string, string> | undefined,
    scope: KeyScope,
  ): Promise<{ ciphertext: string; keyId: string; keyVersion: number; chain: string[] }>;
}

export interface AuthorizationRequest {
  principal: Principal;
  /** The route's action, such as `key.rotate`. */
  action: string;
  /** The kind of resource the route acts on, such as `key`. */
  resource: string;
  request: FastifyRequest;
  /**
   * The resource itself, once the route has resolved it (the second decision). Absent in the
   * decision the authorization hook makes before the body is read.
   */
  target?: AuthorizationTarget;
}

/** A resource a route resolved: a key (or one of its versions), or a managed principal. */
export type AuthorizationTarget =
  | { type: "key"; key: KeyFacts; version?: number }
  | {
      type: "principal";
      id: string;
      kind: "operator" | "service";
      /** Null reaches every environment (an unscoped operator token). */
      environment: string | null;
      tenant: string | null;
      service: string | null;
    };

export interface AuthorizationDecision {
  allowed: boolean;
  /** The reason for a denial, recorded in the audit event and logs and never sent to the client. */
  reason?: string;
  /** Set when only a break-glass grant allowed the request; every such use is audited. */
  breakGlass?: { grantId: string; expiresAt: number };
}

/** The policy decision point every authenticated route consults before its handler runs. */
export interface Authorizer {
  authorize(input: AuthorizationRequest): Promise<AuthorizationDecision>;
}

/** The outcome of `arbor apply`: planned changes, differences from the file, and whether it applied. */
export interface ApplyResult {
  /** Planned changes, each with at least `action` and `path`. */
  plan: readonly object[];
  /** Differences between the file and the tree, each with at least `path` and `reason`. */
  drift: readonly object[];
  applied: boolean;
  /** Paths created by this call. */
  created?: readonly string[];
  /** Keys in the file that already exist as described. */
  unchanged?: number;
}

export type ApplyHierarchy = (
  document: unknown,
  dryRun: boolean,
  principal: OperatorPrincipal,
) => Promise<ApplyResult>;

/** A root provider that can also create its root (the sealed provider). */
export type InitializableRoot = RootProvider & {
  initialize(options: { shares: number; threshold: number }): Promise<InitializeResult>;
};

export interface ServerLimits {
  /** Largest plaintext, in bytes after base64 decoding, that the encrypt route accepts. */
  maxPayloadBytes: number;
  /** Largest request body in bytes; larger bodies are rejected before they are parsed. */
  maxBodyBytes: number;
  /** Unseal requests accepted per source address per minute. */
  unsealAttemptsPerMinute: number;
}

/** Everything the HTTP server needs; the composition root builds it once. */
export interface ServerDeps {
  keyTree: KeyTree;
  root: InitializableRoot;
  envelope: EnvelopeService;
  operators: OperatorTokenService;
  audit: AuditWriter;
  /** The chained audit log's reads, checkpoints and retention; absent in tests without them. */
  auditLog?: {
    store: AuditLogStore;
    checkpointer: Pick<Checkpointer, "checkpoint">;
    completeness(): Promise<CompletenessReport>;
    prune(through: number): Promise<PruneResult | null>;
  };
  /** HMAC fingerprints for audit events; absent in tests that do not need them. */
  auditKey?: Pick<AuditKey, "fingerprint">;
  authorizer: Authorizer;
  metrics: ServerMetrics;
  clock: Clock;
  logger: Logger;
  /** The health route runs a trivial query on it; root rotation re-wraps masters in it. */
  storage: Storage;
  limits: ServerLimits;
  /** Public base URL of this deployment, such as `https://arbor.example.com`. */
  externalAddress: string;
  applyHierarchy?: ApplyHierarchy;
  /**
   * Service principals, OAuth endpoints and issuers. Without it those routes are absent and the
   * API accepts operator tokens only.
   */
  tokens?: TokenService;
  /** Stored policies, grants and explanations. Without it the policy routes are absent. */
  policies?: PolicyAdministration;
}
