import type { AuditWriter } from "../audit/types.ts";
import type { Clock } from "../clock.ts";
import { invalidArgument } from "../errors/index.ts";
import type { KeyTree } from "../hierarchy/index.ts";
import { sha256SecretHashing, type SecretHashing } from "../operators/index.ts";
import type { ServicePrincipalRow, Storage } from "../storage/index.ts";
import { createClientAuthenticator } from "./client-auth.ts";
import { createIssuerDirectory } from "./issuers.ts";
import { createTokenIssuer } from "./issue.ts";
import { MIN_TOKEN_TTL_MS } from "./principal-input.ts";
import { createPrincipalManager } from "./principals.ts";
import { createRejectionRecorder, type RejectionMetrics } from "./rejections.ts";
import { SigningKeyCache, type ObservedMaterialCache } from "./signing-keys.ts";
import type { ServicePrincipal } from "./types.ts";
import { createTokenVerifier, type SignatureVerifier, type VerificationResult } from "./verify.ts";

/** Lifetime of an access token when nothing lowers it: 15 minutes. */
export const DEFAULT_TOKEN_TTL_MS = 15 * 60_000;
/** Margin between the maximum token lifetime and a retired sign version leaving the JWKS. */
export const SIGN_RETIRE_MARGIN_MS = 5 * 60_000;

export interface TokenServiceOptions {
  /** Token lifetime before a principal's cap, in milliseconds; default 15 minutes. */
  defaultTtlMs?: number;
  /** Maximum token lifetime a principal may be given, in milliseconds; default `defaultTtlMs`. */
  maxTtlMs?: number;
  /** Clock skew tolerated by verification, 0 to 300 whole seconds; default 0. */
  leewaySeconds?: number;
}

export interface TokenServiceDeps {
  storage: Storage;
  keyTree: KeyTree;
  clock: Clock;
  audit: AuditWriter;
  metrics: RejectionMetrics;
  /** Public base URL of the deployment, without a trailing slash. */
  externalAddress: string;
  options?: TokenServiceOptions;
  /** Digest and comparison of client secrets; tests inject a counting one. */
  secretHashing?: SecretHashing;
  /** Signature check of the verifier; tests inject a counting one. */
  verifySignature?: SignatureVerifier;
  /**
   * The key tree's material cache. When given, imported signing keys are cached for its TTL and
   * dropped whenever it is cleared; otherwise every token imports its key anew.
   */
  materialCache?: ObservedMaterialCache;
}

/** Verification result of a token that passed every check. */
export type ActiveToken = Extract<VerificationResult, { active: true }>;

/**
 * Returns how long a `sign` version must stay published after it stops being primary: the
 * maximum token lifetime plus a margin. The composition root passes it to the key tree, so no
 * token outlives the public key that verifies it.
 */
export function signRetireAfterMs(options: TokenServiceOptions = {}): number {
  return resolveTtls(options).maxTtlMs + SIGN_RETIRE_MARGIN_MS;
}

/**
 * Creates the token service: service principals and their client secrets, client authentication,
 * token issuance, verification (for introspection and for Arbor's own API), revocation, and the
 * issuers' JWKS and metadata.
 */
export function createTokenService(deps: TokenServiceDeps) {
  const { storage, clock } = deps;
  const { defaultTtlMs, maxTtlMs } = resolveTtls(deps.options ?? {});
  const hashing = deps.secretHashing ?? sha256SecretHashing;

  const issuers = createIssuerDirectory({ storage, clock, externalAddress: deps.externalAddress });
  const verifier = createTokenVerifier({
    storage,
    clock,
    issuerOfKey: issuers.issuerOfKey,
    leewaySeconds: deps.options?.leewaySeconds ?? 0,
    ...(deps.verifySignature === undefined ? {} : { verifySignature: deps.verifySignature }),
  });
  const leewayMs = verifier.leewaySeconds * 1000;

  /**
   * Records the token's `jti` as revoked until its expiry, marks its issuance revoked and writes
   * the outbox, in one transaction. Returns false when it was already revoked.
   */
  async function revoke(token: ActiveToken): Promise<boolean> {
    const now = clock.now();
    const { claims } = token;
    return storage.write(async (trx) => {
      const inserted = await storage.servicePrincipals.insertRevokedToken(
        {
          jti: claims.jti,
          principal_id: token.principal.id,
          key_id: token.key.id,
          key_version: token.version.version,
          expires_at: claims.exp * 1000,
          revoked_at: now,
        },
        trx,
      );
      if (!inserted) return false;

      await storage.issuances.revoke(claims.jti, now, trx);
      await storage.outbox.append(
        "token.revoked",
        { jti: claims.jti, clientId: token.principal.id, expiresAt: claims.exp * 1000 },
        now,
        trx,
      );
      return true;
    });
  }

  /**
   * Deletes revoked token ids whose token can no longer verify anyway: expired longer ago than
   * the leeway. Returns how many were deleted.
   */
  async function pruneRevokedTokens(): Promise<number> {
    return storage.servicePrincipals.pruneRevokedTokens(clock.now() - leewayMs);
  }

  return {
    /** The `aud` of access tokens that Arbor's own API accepts. */
    apiAudience: `${deps.externalAddress}/v1`,
    issuers,
    principals: createPrincipalManager({
      storage,
      keyTree: deps.keyTree,
      clock,
      hashing,
      issuers,
      defaultTtlMs,
      maxTtlMs,
    }),
    authenticateClient: createClientAuthenticator({ storage, clock, hashing }).authenticate,
    issue: createTokenIssuer({
      storage,
      keyTree: deps.keyTree,
      clock,
      issuers,
      defaultTtlMs,
      ...(deps.materialCache === undefined
        ? {}
        : {
            signingKeys: new SigningKeyCache({
              clock,
              ttlMs: deps.materialCache.ttlMs,
            }).followClears(deps.materialCache),
          }),
    }).issue,
    verify: verifier.verify,
    revoke,
    pruneRevokedTokens,
    recordRejection: createRejectionRecorder({
      audit: deps.audit,
      clock,
      metrics: deps.metrics,
    }),
    requestPrincipal,
  };
}

export type TokenService = ReturnType<typeof createTokenService>;

/**
 * Returns the request principal of a client, authenticated by its secret or by one of its tokens.
 */
export function requestPrincipal(
  row: ServicePrincipalRow,
  tokenId: string | null,
): ServicePrincipal {
  return {
    type: "service",
    id: row.id,
    environment: row.environment,
    tenant: row.tenant,
    service: row.service,
    readOnly: false,
    root: false,
    tokenId,
  };
}

function resolveTtls(options: TokenServiceOptions): { defaultTtlMs: number; maxTtlMs: number } {
  const defaultTtlMs = options.defaultTtlMs ?? DEFAULT_TOKEN_TTL_MS;
  const maxTtlMs = options.maxTtlMs ?? defaultTtlMs;
  for (const [parameter, value] of [
    ["defaultTtlMs", defaultTtlMs],
    ["maxTtlMs", maxTtlMs],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < MIN_TOKEN_TTL_MS) {
      throw invalidArgument(
        parameter,
        value,
        `must be a whole number of milliseconds, at least ${MIN_TOKEN_TTL_MS}`,
      );
    }
  }
  if (defaultTtlMs > maxTtlMs) {
    throw invalidArgument("defaultTtlMs", defaultTtlMs, `must not exceed maxTtlMs (${maxTtlMs})`);
  }
  return { defaultTtlMs, maxTtlMs };
}
