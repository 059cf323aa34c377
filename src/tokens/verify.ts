import type { JsonWebKey } from "node:crypto";

import type { Clock } from "../clock.ts";
import { verifySignature, type SigningAlgorithm } from "../crypto/index.ts";
import { invalidArgument } from "../errors/index.ts";
import type { KeyRow, KeyVersionRow, ServicePrincipalRow, Storage } from "../storage/index.ts";
import { ancestorsUsable } from "./chain.ts";
import { checkJwsHeader, decodePayload, type CheckedJws } from "./jws.ts";
import { isPublished } from "./issuers.ts";
import type { AccessTokenClaims, RejectionReason, TokenRejection } from "./types.ts";

/** Largest clock skew, in seconds, that a verifier may be configured to tolerate. */
export const MAX_LEEWAY_SECONDS = 300;

/** Checks a signature; the default is `verifySignature` from src/crypto. */
export type SignatureVerifier = (
  algorithm: SigningAlgorithm,
  publicJwk: JsonWebKey,
  data: Uint8Array,
  signature: Uint8Array,
) => boolean;

export interface TokenVerifierDeps {
  storage: Pick<Storage, "keys" | "versions" | "servicePrincipals">;
  clock: Clock;
  /** Returns the issuer URL of a `sign` key (the master directly above it). */
  issuerOfKey(key: KeyRow): Promise<string>;
  /** Tolerated clock skew for `exp`, `nbf` and `iat`: a whole number of seconds, 0 to 300. */
  leewaySeconds: number;
  /** Injected by tests to count signature checks; production uses the default. */
  verifySignature?: SignatureVerifier;
}

export interface VerifyOptions {
  /** When set, `aud` must be or contain it (Arbor's own API audience, for example). */
  audience?: string;
}

export type VerificationResult =
  | {
      active: true;
      claims: AccessTokenClaims;
      principal: ServicePrincipalRow;
      key: KeyRow;
      version: KeyVersionRow;
    }
  | { active: false; rejection: TokenRejection };

// Key rows and principals never change in the fields read here, so they are cached; the bound
// only limits memory. Version states, revocations and ancestors are read on every call.
const MAX_CACHED_ROWS = 10_000;

/**
 * Verifies Arbor access tokens, for introspection and for Arbor's own API authentication. The
 * checks run cheapest first, and nothing that needs a key runs before the header checks of
 * `checkJwsHeader` have passed:
 *
 * 1. length, serialization and header (`alg` EdDSA or ES256, `typ` at+jwt, `kid`, no `crit`,
 *    `zip`, `enc` or `b64`);
 * 2. the key version named by `kid`: a `sign` key whose stored algorithm equals `alg`, a version
 *    that is primary, or active before its `retire_at`, under usable ancestors;
 * 3. the signature, with the stored public key and the stored algorithm (`jwk`, `jku`, `x5u` and
 *    `x5c` are never read, and no request leaves the process);
 * 4. the claims: their types, and `iss` equal to the key's issuer. `exp`, `nbf` and `iat` must
 *    hold within the leeway. The `client_id` must be the principal whose sign key is the `kid`'s
 *    key, with that principal's `env` and `tenant`. The `jti` must not be revoked, and `aud` must
 *    contain the required audience when there is one.
 */
export function createTokenVerifier(deps: TokenVerifierDeps) {
  const leewaySeconds = requireLeeway(deps.leewaySeconds);
  const checkSignature = deps.verifySignature ?? verifySignature;
  const { storage } = deps;
  const keys = new Map<string, KeyRow>();
  const principals = new Map<string, ServicePrincipalRow>();

  async function verify(token: unknown, options: VerifyOptions = {}): Promise<VerificationResult> {
    const checked = checkJwsHeader(token);
    if (!checked.ok) return inactive(checked.reason, checked.kid, null);
    const jws = checked.jws;
    const kid = jws.header.kid;

    const key = await findKey(jws.keyId);
    if (key === undefined || key.purpose !== "sign") return inactive("unknown_kid", kid, null);
    if (key.algorithm !== jws.header.alg) return inactive("alg_mismatch", kid, null);
    const version = await storage.versions.find(key.id, jws.keyVersion);
    if (version === undefined) return inactive("unknown_kid", kid, null);
    if (!isSigningVersionUsable(version, deps.clock.now())) {
      return inactive("key_unusable", kid, null);
    }

    if (!signatureVerifies(key, version, jws)) return inactive("bad_signature", kid, null);
    if (!(await ancestorsUsable(storage, version))) return inactive("key_unusable", kid, null);

    const claims = readClaims(decodePayload(jws));
    if (claims === null) return inactive("bad_claims", kid, null);
    const failure = await checkClaims(claims, key, options);
    if (failure !== null) return inactive(failure, kid, claims.jti);

    const principal = (await findPrincipal(claims.client_id))!;
    return { active: true, claims, principal, key, version };
  }

  function signatureVerifies(key: KeyRow, version: KeyVersionRow, jws: CheckedJws): boolean {
    if (version.public_jwk === null) return false;
    const publicJwk = JSON.parse(version.public_jwk) as JsonWebKey;
    try {
      // The algorithm is the stored key's; the header's `alg` was only compared with it.
      return checkSignature(
        key.algorithm as SigningAlgorithm,
        publicJwk,
        jws.signingInput,
        jws.signature,
      );
    } catch {
      // Only an unusable stored key throws; no signature can verify against it.
      return false;
    }
  }

  async function checkClaims(
    claims: AccessTokenClaims,
    key: KeyRow,
    options: VerifyOptions,
  ): Promise<RejectionReason | null> {
    if (claims.iss !== (await deps.issuerOfKey(key))) return "issuer_mismatch";

    const now = deps.clock.now() / 1000;
    if (now >= claims.exp + leewaySeconds) return "expired";
    if (claims.nbf > now + leewaySeconds) return "not_yet_valid";
    if (claims.iat > now + leewaySeconds) return "issued_in_future";

    const principal = await findPrincipal(claims.client_id);
    if (principal === undefined) return "unknown_client";
    if (principal.sign_key_id !== key.id || claims.sub !== principal.id) return "client_mismatch";
    if (claims.env !== principal.environment || claims.tenant !== principal.tenant) {
      return "client_mismatch";
    }

    if (options.audience !== undefined && !audiences(claims).includes(options.audience)) {
      return "audience_mismatch";
    }
    if (await storage.servicePrincipals.isTokenRevoked(claims.jti)) return "revoked";
    return null;
  }

  async function findKey(keyId: string): Promise<KeyRow | undefined> {
    const cached = keys.get(keyId);
    if (cached !== undefined) return cached;
    const key = await storage.keys.findById(keyId);
    if (key !== undefined) remember(keys, keyId, key);
    return key;
  }

  async function findPrincipal(id: string): Promise<ServicePrincipalRow | undefined> {
    const cached = principals.get(id);
    if (cached !== undefined) return cached;
    const principal = await storage.servicePrincipals.findById(id);
    if (principal !== undefined) remember(principals, id, principal);
    return principal;
  }

  return { verify, leewaySeconds };
}

export type TokenVerifier = ReturnType<typeof createTokenVerifier>;

/** Returns `aud` as an array. */
export function audiences(claims: Pick<AccessTokenClaims, "aud">): string[] {
  return typeof claims.aud === "string" ? [claims.aud] : claims.aud;
}

/** A version verifies tokens while it is primary, or active and not yet past its `retire_at`. */
function isSigningVersionUsable(version: KeyVersionRow, now: number): boolean {
  return version.state !== "pending" && isPublished(version, now);
}

function requireLeeway(leewaySeconds: number): number {
  if (
    !Number.isSafeInteger(leewaySeconds) ||
    leewaySeconds < 0 ||
    leewaySeconds > MAX_LEEWAY_SECONDS
  ) {
    throw invalidArgument(
      "leewaySeconds",
      leewaySeconds,
      `must be a whole number of seconds from 0 to ${MAX_LEEWAY_SECONDS}`,
    );
  }
  return leewaySeconds;
}

/** Returns the claims when every one has the type RFC 9068 and Arbor give it; null otherwise. */
function readClaims(payload: Record<string, unknown> | null): AccessTokenClaims | null {
  if (payload === null) return null;

  const { iss, sub, client_id, aud, exp, iat, nbf, jti, scope, env, tenant } = payload;
  if (!isText(iss) || !isText(sub) || !isText(client_id) || !isText(jti)) return null;
  if (!isText(env) || !isText(tenant)) return null;
  if (!isNumericDate(exp) || !isNumericDate(iat) || !isNumericDate(nbf)) return null;
  if (scope !== undefined && typeof scope !== "string") return null;
  const audience = audienceOf(aud);
  if (audience === null) return null;

  return {
    iss,
    sub,
    client_id,
    aud: audience,
    exp,
    iat,
    nbf,
    jti,
    ...(scope === undefined ? {} : { scope }),
    env,
    tenant,
  };
}

/** `aud` as RFC 7519 allows it: one string or a non-empty array of strings. */
function audienceOf(aud: unknown): string | string[] | null {
  if (isText(aud)) return aud;
  if (Array.isArray(aud) && aud.length > 0 && aud.every(isText)) return aud;
  return null;
}

function isText(value: unknown): value is string {
  return typeof value === "string" && value !== "";
}

function isNumericDate(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0;
}

function inactive(
  reason: RejectionReason,
  kid: string | null,
  jti: string | null,
): VerificationResult {
  return { active: false, rejection: { reason, kid, jti } };
}

function remember<T>(cache: Map<string, T>, id: string, row: T): void {
  if (cache.size >= MAX_CACHED_ROWS) cache.clear();
  cache.set(id, row);
}
