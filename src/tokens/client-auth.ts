import type { Clock } from "../clock.ts";
import { parseOpaqueSecret } from "../crypto/index.ts";
import { ArborError } from "../errors/index.ts";
import { hashSecret, type SecretHashing } from "../operators/index.ts";
import type { Storage } from "../storage/index.ts";
import type { ClientSecretRow, ServicePrincipalRow } from "../storage/index.ts";

/** Client credentials as the token, introspection and revocation endpoints received them. */
export interface ClientCredentials {
  clientId: string;
  clientSecret: string;
  method: "client_secret_basic" | "client_secret_post";
}

/**
 * Reason a client authentication failed, attached as the `cause` of the UNAUTHENTICATED error for
 * the audit event. Clients only ever see one message.
 */
export interface ClientAuthenticationFailure {
  reason: "malformed" | "unknown_client" | "wrong_secret" | "expired" | "revoked";
  /** The principal id when it exists; never the secret. */
  clientId: string | null;
  secretId: string | null;
}

/** The one message of every failed client authentication, whatever the cause. */
export const CLIENT_AUTHENTICATION_FAILED_MESSAGE =
  "client authentication failed: the client id is unknown, or the secret is wrong, expired or revoked";

/**
 * Stands in for the stored hash when the presented secret belongs to no secret of the named
 * client, so an unknown client id costs the same hash and comparison as a wrong secret. The input
 * contains spaces, so no well-formed secret hashes to it.
 */
export const UNKNOWN_CLIENT_SECRET_HASH: Uint8Array = hashSecret(
  "arbor client secret: no such client or secret",
);

export interface ClientAuthenticatorDeps {
  storage: Pick<Storage, "servicePrincipals">;
  clock: Clock;
  hashing: SecretHashing;
}

/**
 * Checks client credentials. Every call does the same work whatever the outcome: one SHA-256 of
 * the presented secret, a look-up of the client id, a look-up of the hash, and one constant-time
 * comparison, against the stored hash when the secret belongs to the client and against
 * {@link UNKNOWN_CLIENT_SECRET_HASH} otherwise. Only then are the outcome's details examined.
 */
export function createClientAuthenticator(deps: ClientAuthenticatorDeps) {
  const repository = deps.storage.servicePrincipals;

  async function authenticate(
    credentials: ClientCredentials,
  ): Promise<{ principal: ServicePrincipalRow; secret: ClientSecretRow }> {
    const presented = deps.hashing.digest(credentials.clientSecret);
    const principal = await repository.findById(credentials.clientId);
    const secret = await repository.findSecretByHash(presented);

    const belongs =
      principal !== undefined && secret !== undefined && secret.principal_id === principal.id;
    const stored = belongs ? new Uint8Array(secret.secret_hash) : UNKNOWN_CLIENT_SECRET_HASH;
    const matches = deps.hashing.equal(presented, stored);

    if (!belongs || !matches) {
      throw rejected({
        reason: failureReason(principal, credentials.clientSecret),
        clientId: principal?.id ?? null,
        secretId: null,
      });
    }
    if (secret.revoked_at !== null) {
      throw rejected({ reason: "revoked", clientId: principal.id, secretId: secret.id });
    }
    const expiresAt = secret.expires_at === null ? null : Number(secret.expires_at);
    if (expiresAt !== null && deps.clock.now() >= expiresAt) {
      throw rejected({ reason: "expired", clientId: principal.id, secretId: secret.id });
    }
    return { principal, secret };
  }

  return { authenticate };
}

export type ClientAuthenticator = ReturnType<typeof createClientAuthenticator>;

/** Names the failure for the audit event, after the uniform work is done. */
function failureReason(
  principal: ServicePrincipalRow | undefined,
  secret: string,
): ClientAuthenticationFailure["reason"] {
  if (principal === undefined) return "unknown_client";
  try {
    parseOpaqueSecret(secret, "client");
  } catch {
    return "malformed";
  }
  return "wrong_secret";
}

function rejected(failure: ClientAuthenticationFailure): ArborError {
  return new ArborError(
    "UNAUTHENTICATED",
    CLIENT_AUTHENTICATION_FAILED_MESSAGE,
    {},
    { cause: failure },
  );
}
