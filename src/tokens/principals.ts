import type { Clock } from "../clock.ts";
import { generateOpaqueSecret, newOpaqueId } from "../crypto/index.ts";
import { ArborError, quote } from "../errors/index.ts";
import { isInScope, type KeyScope, type KeyTree } from "../hierarchy/index.ts";
import type { SecretHashing } from "../operators/index.ts";
import type { OperatorPrincipal } from "../operators/types.ts";
import {
  NO_TENANT,
  type ClientSecretRow,
  type Executor,
  type ServicePrincipalRow,
  type Storage,
} from "../storage/index.ts";
import type { IssuerDirectory } from "./issuers.ts";
import { validateOverlap, validatePrincipalInput } from "./principal-input.ts";
import type {
  ClientSecretInfo,
  CreateServicePrincipalInput,
  ServicePrincipalInfo,
} from "./types.ts";

export const SERVICE_PRINCIPAL_ID_PATTERN = /^svc_[a-z2-7]{26}$/;
export const CLIENT_SECRET_ID_PATTERN = /^sec_[a-z2-7]{26}$/;

export interface PrincipalManagerDeps {
  storage: Storage;
  keyTree: Pick<KeyTree, "resolveKey">;
  clock: Clock;
  hashing: SecretHashing;
  issuers: Pick<IssuerDirectory, "issuerOfKey">;
  /** Token lifetime when a principal names none, in milliseconds. */
  defaultTtlMs: number;
  /** Maximum token lifetime a principal may have, in milliseconds. */
  maxTtlMs: number;
}

/** A new client secret: shown once, stored only as its SHA-256 hash. */
export interface NewClientSecret {
  secret: ClientSecretInfo;
  clientSecret: string;
}

/**
 * Service principals as operators manage them. An operator sees and changes only principals
 * inside its environment and tenant scope; another one is NOT_FOUND, like a key in another scope.
 * Every change writes an outbox row in its transaction.
 */
export function createPrincipalManager(deps: PrincipalManagerDeps) {
  const { storage, clock } = deps;
  const repository = storage.servicePrincipals;

  async function create(
    actor: OperatorPrincipal,
    input: CreateServicePrincipalInput,
  ): Promise<{ info: ServicePrincipalInfo } & NewClientSecret> {
    requireWritable(actor, "create service principals");
    const valid = validatePrincipalInput(input, deps.defaultTtlMs, deps.maxTtlMs);
    requireCreatableInScope(actor, valid);

    const signKey = await deps.keyTree.resolveKey(signKeyPath(valid), "sign", scopeOf(actor));
    const id = newOpaqueId("svc");
    const generated = newSecret(id);
    const now = clock.now();

    await storage.write(async (trx) => {
      await repository.insert(
        {
          id,
          name: valid.name,
          environment: valid.environment,
          tenant: valid.tenant,
          service: valid.service,
          sign_key_id: signKey.id,
          sign_key_kind: "service",
          scopes: JSON.stringify(valid.scopes),
          audiences: JSON.stringify(valid.audiences),
          max_token_ttl_ms: valid.maxTokenTtlMs,
          created_at: now,
        },
        trx,
      );
      await insertSecret(generated, now, trx);
      await storage.outbox.append(
        "service.created",
        { id, environment: valid.environment, tenant: valid.tenant, service: valid.service },
        now,
        trx,
      );
    });
    return {
      info: await get(actor, id),
      secret: secretInfo(generated.row(now)),
      clientSecret: generated.clientSecret,
    };
  }

  async function list(viewer: OperatorPrincipal): Promise<ServicePrincipalInfo[]> {
    const filter: { environment?: string; tenant?: string } = {};
    if (viewer.environment !== null) filter.environment = viewer.environment;
    if (viewer.tenant !== null) filter.tenant = viewer.tenant;
    const rows = await repository.list(filter);
    return Promise.all(rows.map(toInfo));
  }

  async function get(viewer: OperatorPrincipal, id: string): Promise<ServicePrincipalInfo> {
    return toInfo(await findInScope(viewer, id));
  }

  /**
   * Creates a new secret. Every live secret of the principal then expires `overlapMs` from now
   * (at once for 0), unless it already expires sooner, so old and new both work for the overlap.
   */
  async function rotateSecret(
    actor: OperatorPrincipal,
    id: string,
    overlapMs: number,
  ): Promise<NewClientSecret & { previousExpireAt: number }> {
    requireWritable(actor, "rotate client secrets");
    const overlap = validateOverlap(overlapMs);
    const principal = await findInScope(actor, id);
    const generated = newSecret(principal.id);

    const now = clock.now();
    const previousExpireAt = now + overlap;
    await storage.write(async (trx) => {
      await repository.shortenLiveSecrets(principal.id, previousExpireAt, now, trx);
      await insertSecret(generated, now, trx);
      await storage.outbox.append(
        "service.secret_rotated",
        { id: principal.id, secretId: generated.id, previousExpireAt },
        now,
        trx,
      );
    });
    return {
      secret: secretInfo(generated.row(now)),
      clientSecret: generated.clientSecret,
      previousExpireAt,
    };
  }

  /** Revokes one secret at once; revoking a revoked secret returns it unchanged. */
  async function revokeSecret(
    actor: OperatorPrincipal,
    id: string,
    secretId: string,
  ): Promise<ClientSecretInfo> {
    requireWritable(actor, "revoke client secrets");
    const principal = await findInScope(actor, id);

    return storage.write(async (trx) => {
      const secret = await repository.findSecret(secretId, trx);
      if (secret === undefined || secret.principal_id !== principal.id) {
        throw new ArborError(
          "NOT_FOUND",
          `client secret ${quote(secretId)} of service principal ${principal.id} not found`,
          { parameter: "secretId", value: secretId },
        );
      }
      if (secret.revoked_at !== null) return secretInfo(secret);

      // A wall clock stepped backwards must not put the revocation before the creation, which
      // the table's CHECK would reject.
      const now = Math.max(clock.now(), Number(secret.created_at));
      await repository.revokeSecret(secret.id, now, trx);
      await storage.outbox.append(
        "service.secret_revoked",
        { id: principal.id, secretId: secret.id, revokedAt: now },
        now,
        trx,
      );
      return secretInfo({ ...secret, revoked_at: now });
    });
  }

  async function findInScope(viewer: OperatorPrincipal, id: string): Promise<ServicePrincipalRow> {
    const row = SERVICE_PRINCIPAL_ID_PATTERN.test(id) ? await repository.findById(id) : undefined;
    if (row === undefined || !isInScope(row, scopeOf(viewer))) {
      throw new ArborError("NOT_FOUND", `service principal ${quote(id)} not found`, {
        parameter: "id",
        value: id,
      });
    }
    return row;
  }

  function newSecret(principalId: string) {
    const clientSecret = generateOpaqueSecret("client");
    const id = newOpaqueId("sec");
    const secretHash = deps.hashing.digest(clientSecret);
    return {
      id,
      clientSecret,
      row: (now: number): ClientSecretRow => ({
        id,
        principal_id: principalId,
        secret_hash: secretHash,
        created_at: now,
        expires_at: null,
        revoked_at: null,
      }),
    };
  }

  async function insertSecret(
    generated: ReturnType<typeof newSecret>,
    now: number,
    trx: Executor,
  ): Promise<void> {
    await repository.insertSecret(generated.row(now), trx);
  }

  async function toInfo(row: ServicePrincipalRow): Promise<ServicePrincipalInfo> {
    const key = await storage.keys.findById(row.sign_key_id);
    if (key === undefined) throw new ArborError("INTERNAL", `sign key ${row.sign_key_id} missing`);
    const secrets = await repository.listSecrets(row.id);
    return {
      id: row.id,
      name: row.name,
      environment: row.environment,
      tenant: row.tenant,
      service: row.service,
      signKeyId: key.id,
      signKeyPath: key.path,
      issuer: await deps.issuers.issuerOfKey(key),
      scopes: JSON.parse(row.scopes) as string[],
      audiences: JSON.parse(row.audiences) as string[],
      maxTokenTtlMs: Number(row.max_token_ttl_ms),
      createdAt: Number(row.created_at),
      secrets: secrets.map(secretInfo),
    };
  }

  return { create, list, get, rotateSecret, revokeSecret };
}

export type PrincipalManager = ReturnType<typeof createPrincipalManager>;

function scopeOf(actor: OperatorPrincipal): KeyScope {
  return { environment: actor.environment, tenant: actor.tenant };
}

function signKeyPath(input: { environment: string; tenant: string; service: string }): string {
  const scope =
    input.tenant === NO_TENANT ? input.environment : `${input.environment}/${input.tenant}`;
  return `${scope}/${input.service}:sign`;
}

function requireWritable(actor: OperatorPrincipal, action: string): void {
  if (!actor.readOnly) return;
  throw new ArborError(
    "FORBIDDEN",
    `operator token ${actor.id} is read-only and cannot ${action}: use a writable token`,
  );
}

/**
 * Rejects a principal outside the operator's scope with 403 FORBIDDEN. Like key creation, the
 * decision depends only on the requested names and the operator's own scope.
 */
function requireCreatableInScope(
  actor: OperatorPrincipal,
  input: { environment: string; tenant: string },
): void {
  if (isInScope(input, scopeOf(actor))) return;
  const reach =
    actor.tenant === null ? `${actor.environment}` : `${actor.environment}/${actor.tenant}`;
  const requested =
    input.tenant === NO_TENANT ? input.environment : `${input.environment}/${input.tenant}`;
  throw new ArborError(
    "FORBIDDEN",
    `service scope ${quote(requested)} is outside this token's scope ${quote(reach)}; use a token whose scope contains it`,
    { parameter: input.environment === actor.environment ? "tenant" : "environment" },
  );
}

function secretInfo(row: ClientSecretRow): ClientSecretInfo {
  return {
    id: row.id,
    createdAt: Number(row.created_at),
    expiresAt: row.expires_at === null ? null : Number(row.expires_at),
    revokedAt: row.revoked_at === null ? null : Number(row.revoked_at),
  };
}
