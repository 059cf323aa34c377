import type { Clock } from "../clock.ts";
import { ArborError, isArborError, quote } from "../errors/index.ts";
import { parseKeyPath } from "../hierarchy/index.ts";
import type { KeyRow, KeyVersionRow, Storage } from "../storage/index.ts";
import { ancestorsUsable } from "./chain.ts";
import { formatKid } from "./jws.ts";

/** A public key of an issuer's JWKS (RFC 7517), with the fields verifiers select keys by. */
export interface PublishedJwk extends Record<string, unknown> {
  kid: string;
  alg: string;
  use: "sig";
}

/** Authentication methods of the token, introspection and revocation endpoints. */
export const CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"] as const;

// Bounds the memory of the master-path cache; paths never change, so the bound is its only limit.
const MAX_CACHED_MASTERS = 10_000;

export interface IssuerDirectoryDeps {
  storage: Pick<Storage, "keys" | "versions">;
  clock: Clock;
  /** Public base URL of the deployment, without a trailing slash. */
  externalAddress: string;
}

/**
 * Creates the directory of a deployment's issuers: one per master key, at `<external
 * address>/v1/issuers/<master path>`. Each publishes the public keys of the `sign` keys of the
 * services directly under its master, and its RFC 8414 metadata.
 */
export function createIssuerDirectory(deps: IssuerDirectoryDeps) {
  const { storage, externalAddress } = deps;
  const masterPaths = new Map<string, string>();

  function issuerUrl(masterPath: string): string {
    return `${externalAddress}/v1/issuers/${masterPath}`;
  }

  /** Returns the issuer of a `sign` key: the one of the master directly above it. */
  async function issuerOfKey(key: Pick<KeyRow, "id" | "parent_id">): Promise<string> {
    const parentId = key.parent_id;
    if (parentId === null) throw new ArborError("INTERNAL", `key ${key.id} has no parent master`);

    let path = masterPaths.get(parentId);
    if (path === undefined) {
      const master = await storage.keys.findById(parentId);
      if (master === undefined) throw new ArborError("INTERNAL", `master ${parentId} is missing`);
      path = master.path;
      if (masterPaths.size >= MAX_CACHED_MASTERS) masterPaths.clear();
      masterPaths.set(parentId, path);
    }
    return issuerUrl(path);
  }

  /** Finds the master a path names; NOT_FOUND for anything that is not an existing master. */
  async function requireMaster(masterPath: string): Promise<KeyRow> {
    let master: KeyRow | undefined;
    try {
      const parsed = parseKeyPath(masterPath);
      if (parsed.kind === "master") master = await storage.keys.findByPath(masterPath);
    } catch (error) {
      if (!isArborError(error, "INVALID_PATH")) throw error;
    }
    if (master === undefined || master.kind !== "master") {
      throw new ArborError(
        "NOT_FOUND",
        `no issuer ${quote(masterPath)}: an issuer path is the path of a master key, such as prod or prod/acme`,
        { parameter: "issuer", value: masterPath },
      );
    }
    return master;
  }

  /**
   * The JWKS of an issuer: every pending, primary and active version of the `sign` keys directly
   * under its master. An active version leaves at its `retire_at`, before the maintenance job
   * disables it. A version under a disabled or revoked master version leaves too. So the JWKS
   * and the verifier agree at every instant.
   */
  async function jwks(masterPath: string): Promise<{ keys: PublishedJwk[] }> {
    const master = await requireMaster(masterPath);
    const now = deps.clock.now();

    const keys: PublishedJwk[] = [];
    for (const child of await storage.keys.children(master.id)) {
      if (child.purpose !== "sign") continue;
      const versions = await storage.versions.list(child.id);
      for (const version of versions.slice().reverse()) {
        if (!isPublished(version, now) || version.public_jwk === null) continue;
        if (!(await ancestorsUsable(storage, version))) continue;
        keys.push({
          ...(JSON.parse(version.public_jwk) as Record<string, unknown>),
          kid: formatKid(child.id, version.version),
          alg: child.algorithm,
          use: "sig",
        });
      }
    }
    return { keys };
  }

  /** RFC 8414 authorization server metadata of an issuer. */
  async function metadata(masterPath: string): Promise<Record<string, unknown>> {
    const master = await requireMaster(masterPath);
    const issuer = issuerUrl(master.path);
    return {
      issuer,
      token_endpoint: `${externalAddress}/v1/oauth/token`,
      jwks_uri: `${issuer}/jwks`,
      introspection_endpoint: `${externalAddress}/v1/oauth/introspect`,
      revocation_endpoint: `${externalAddress}/v1/oauth/revoke`,
      grant_types_supported: ["client_credentials"],
      // No authorization endpoint: clients authenticate with their own credentials only.
      response_types_supported: [],
      token_endpoint_auth_methods_supported: [...CLIENT_AUTH_METHODS],
      introspection_endpoint_auth_methods_supported: [...CLIENT_AUTH_METHODS],
      revocation_endpoint_auth_methods_supported: [...CLIENT_AUTH_METHODS],
      access_token_signing_alg_values_supported: ["EdDSA", "ES256"],
    };
  }

  return { issuerUrl, issuerOfKey, requireMaster, jwks, metadata };
}

export type IssuerDirectory = ReturnType<typeof createIssuerDirectory>;

/** True for versions whose public key verifiers may use at `now`. */
export function isPublished(version: KeyVersionRow, now: number): boolean {
  if (version.state === "pending" || version.state === "primary") return true;
  if (version.state !== "active") return false;
  return version.retire_at === null || Number(version.retire_at) > now;
}
