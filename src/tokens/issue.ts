import type { KeyObject } from "node:crypto";

import type { Clock } from "../clock.ts";
import { importPrivateKey, newOpaqueId, sign, type SigningAlgorithm } from "../crypto/index.ts";
import { ArborError, isArborError, quote } from "../errors/index.ts";
import type { KeyTree, KeyVersionRef } from "../hierarchy/index.ts";
import type { ServicePrincipalRow, Storage } from "../storage/index.ts";
import type { IssuerDirectory } from "./issuers.ts";
import type { SigningKeyCache } from "./signing-keys.ts";
import { ACCESS_TOKEN_TYP, assembleJws, encodeSegment, formatKid } from "./jws.ts";
import { parseScopeParameter } from "./principal-input.ts";
import type { AccessTokenClaims, AccessTokenHeader } from "./types.ts";

/** The parameters of a token request that shape the token. */
export interface TokenRequest {
  /** RFC 6749 `scope`: space-separated values; omitted means every scope the client may have. */
  scope?: string;
  /** RFC 8707 `resource` values: absolute URIs without a fragment. */
  resources?: string[];
  /** `audience` values, as RFC 8693 names the parameter. */
  audiences?: string[];
}

export interface IssuedToken {
  accessToken: string;
  claims: AccessTokenClaims;
  /** Seconds from `iat` to `exp`, the `expires_in` of the response. */
  expiresIn: number;
  keyId: string;
  keyVersion: number;
  /** The signing version's chain, root first, for the issuance's audit event. */
  chain: string[];
}

export interface TokenIssuerDeps {
  storage: Pick<Storage, "keys">;
  keyTree: Pick<KeyTree, "primaryOf" | "withMaterial" | "chainOf">;
  clock: Clock;
  issuers: Pick<IssuerDirectory, "issuerOfKey">;
  /** Lifetime of a token, in milliseconds, before the principal's and the key's caps. */
  defaultTtlMs: number;
  /** Imported private keys; without it every token imports its key anew. */
  signingKeys?: SigningKeyCache;
}

/**
 * Issues RFC 9068 access tokens signed by the primary version of the client's `sign` key. The
 * lifetime is the default, lowered to the principal's maximum and to the signing version's
 * `retire_at` when it has one, so no token outlives the key that verifies it. `iat`, `nbf` and
 * `exp` come from the injected clock.
 */
export function createTokenIssuer(deps: TokenIssuerDeps) {
  async function issue(
    principal: ServicePrincipalRow,
    request: TokenRequest,
  ): Promise<IssuedToken> {
    const scopes = grantedScopes(principal, request.scope);
    const audience = grantedAudience(principal, request);
    const ref = await signingVersion(principal);

    const nowMs = deps.clock.now();
    const iat = Math.floor(nowMs / 1000);
    const ttlMs = Math.min(deps.defaultTtlMs, Number(principal.max_token_ttl_ms));
    let exp = Math.floor((nowMs + ttlMs) / 1000);
    if (ref.version.retire_at !== null) {
      exp = Math.min(exp, Math.floor(Number(ref.version.retire_at) / 1000));
    }
    if (exp <= iat) {
      throw new ArborError(
        "INVALID_GRANT",
        `the signing version of ${ref.key.path} retires now; rotate the key and retry`,
      );
    }

    const claims: AccessTokenClaims = {
      iss: await deps.issuers.issuerOfKey(ref.key),
      sub: principal.id,
      client_id: principal.id,
      aud: audience.length === 1 ? audience[0]! : audience,
      exp,
      iat,
      nbf: iat,
      jti: newOpaqueId("tok"),
      ...(scopes.length === 0 ? {} : { scope: scopes.join(" ") }),
      env: principal.environment,
      tenant: principal.tenant,
    };
    const algorithm = ref.key.algorithm as SigningAlgorithm;
    const header: AccessTokenHeader = {
      alg: algorithm,
      typ: ACCESS_TOKEN_TYP,
      kid: formatKid(ref.key.id, ref.version.version),
    };
    const signingInput = `${encodeSegment(header)}.${encodeSegment(claims)}`;

    const privateKey = await signingKey(ref);
    const signature = sign(algorithm, privateKey, Buffer.from(signingInput, "ascii"));
    return {
      accessToken: assembleJws(signingInput, signature),
      claims,
      expiresIn: exp - iat,
      keyId: ref.key.id,
      keyVersion: ref.version.version,
      chain: await deps.keyTree.chainOf(ref.key.id, ref.version.version),
    };
  }

  /** The primary version of the principal's sign key; INVALID_GRANT when there is none. */
  async function signingVersion(principal: ServicePrincipalRow): Promise<KeyVersionRef> {
    const key = await deps.storage.keys.findById(principal.sign_key_id);
    if (key === undefined) {
      throw new ArborError("INVALID_GRANT", `the sign key of client ${principal.id} is missing`);
    }
    try {
      return await deps.keyTree.primaryOf(key, "sign");
    } catch (error) {
      throw unusableKey(error, key.path);
    }
  }

  /**
   * Returns the version's private key, from the cache or imported from its material (then zeroed).
   */
  async function signingKey(ref: KeyVersionRef): Promise<KeyObject> {
    const { key, version } = ref;
    const cached = deps.signingKeys?.get(key.id, version.version);
    if (cached !== undefined) return cached;

    let imported: KeyObject;
    try {
      imported = await deps.keyTree.withMaterial(ref, importPrivateKey);
    } catch (error) {
      throw unusableKey(error, key.path);
    }
    deps.signingKeys?.put(key.id, version.version, imported);
    return imported;
  }

  return { issue };
}

export type TokenIssuer = ReturnType<typeof createTokenIssuer>;

/** KEY_STATE_CONFLICT (no primary, or a disabled or revoked parent) becomes INVALID_GRANT. */
function unusableKey(error: unknown, path: string): unknown {
  if (!isArborError(error, "KEY_STATE_CONFLICT")) return error;
  return new ArborError(
    "INVALID_GRANT",
    `sign key ${path} cannot sign now: ${error.message}`,
    {},
    { cause: error },
  );
}

/** The requested scope values, each of which the principal must hold; all of them when omitted. */
function grantedScopes(principal: ServicePrincipalRow, scope: string | undefined): string[] {
  const allowed = JSON.parse(principal.scopes) as string[];
  if (scope === undefined) return allowed;

  const requested = parseScopeParameter(scope);
  if (requested === null) {
    throw new ArborError(
      "INVALID_SCOPE",
      "invalid scope: values are separated by single spaces and use printable ASCII without quotes or backslashes",
      { parameter: "scope" },
    );
  }
  const denied = requested.filter((value) => !allowed.includes(value));
  if (denied.length > 0) {
    throw new ArborError(
      "INVALID_SCOPE",
      `scope ${quote(denied[0])} is not allowed for client ${principal.id}; it may request ${allowedList(allowed)}`,
      { parameter: "scope", value: denied[0] },
    );
  }
  return requested;
}

/**
 * The audiences of the token: the requested `resource` and `audience` values, each of which the
 * principal must hold, or every audience of the principal when none is requested.
 */
function grantedAudience(principal: ServicePrincipalRow, request: TokenRequest): string[] {
  const allowed = JSON.parse(principal.audiences) as string[];
  for (const resource of request.resources ?? []) {
    if (!isAbsoluteUriWithoutFragment(resource)) {
      throw new ArborError(
        "INVALID_TARGET",
        `invalid resource ${quote(resource)}: a resource is an absolute URI without a fragment`,
        { parameter: "resource", value: resource },
      );
    }
  }

  const requested = [...new Set([...(request.resources ?? []), ...(request.audiences ?? [])])];
  if (requested.length === 0) return allowed;
  const denied = requested.filter((value) => !allowed.includes(value));
  if (denied.length > 0) {
    throw new ArborError(
      "INVALID_TARGET",
      `audience ${quote(denied[0])} is not allowed for client ${principal.id}; it may request ${allowedList(allowed)}`,
      { parameter: "resource", value: denied[0] },
    );
  }
  return requested;
}

function allowedList(values: readonly string[]): string {
  return values.length === 0 ? "none" : values.map((value) => quote(value)).join(", ");
}

function isAbsoluteUriWithoutFragment(value: string): boolean {
  if (!URL.canParse(value)) return false;
  return !value.includes("#");
}
