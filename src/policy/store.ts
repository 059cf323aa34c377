import { createHash } from "node:crypto";

import type { Transaction } from "kysely";

import { actorFields, currentActor } from "../audit/context.ts";
import type { SqlAuditWriter } from "../audit/sql-writer.ts";
import type { AuditEvent } from "../audit/types.ts";
import type { Clock } from "../clock.ts";
import { newOpaqueId } from "../crypto/index.ts";
import { ArborError, invalidArgument, quote } from "../errors/index.ts";
import { SEGMENT_PATTERN } from "../hierarchy/index.ts";
import { constraintViolation, type Storage } from "../storage/index.ts";
import type { Database } from "../storage/schema.ts";
import {
  createPolicyRepository,
  type PolicyGrantRow,
  type PolicyRow,
} from "../storage/repositories/policies.ts";
import { validateDocuments, type PolicyEngine, type StoredPolicyDocument } from "./engine.ts";
import { GrantIndex, type PolicyGrant } from "./grants.ts";
import { ANY } from "./schema.ts";

/** Topic of the outbox rows that announce a policy or grant change. */
export const POLICY_CHANGED_TOPIC = "policy.changed";

/** Largest policy document, in bytes of UTF-8. */
export const MAX_POLICY_BYTES = 65_536;

/** Maximum lifetime of a break-glass grant: one day, in milliseconds. */
export const MAX_BREAK_GLASS_TTL_MS = 24 * 60 * 60_000;

const ROLE_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;
const PRINCIPAL_ID_PATTERN = /^(opt|svc)_[a-z2-7]{26}$/;
const GRANT_ID_PATTERN = /^grt_[a-z2-7]{26}$/;

/** A stored policy document's current version, as the API shows it. */
export interface PolicyVersionInfo {
  name: string;
  version: number;
  sha256: string;
  deleted: boolean;
  createdAt: number;
  createdBy: string;
  /** Cedar text; empty for a deletion. */
  text: string;
}

export interface ApplyOutcome {
  policy: PolicyVersionInfo;
  /** False when the text equals the current version, which then stays as it is. */
  changed: boolean;
  dryRun: boolean;
}

export interface GrantInput {
  principalId: string;
  role?: string;
  breakGlass?: { environment: string; tenant?: string };
  /** Lifetime in milliseconds; required for break-glass, at most one day. */
  ttlMs?: number;
  reason: string;
}

export interface PolicyStoreDeps {
  storage: Storage;
  engine: PolicyEngine;
  clock: Clock;
  /** Writes the `policy.changed` event in the change's own transaction. */
  audit: Pick<SqlAuditWriter, "writeInTransaction">;
  logger: { error(details: Record<string, unknown>, message: string): void };
}

/** The author of a change: a principal id. */
export interface Actor {
  id: string;
}

/**
 * Stored policies and grants. Every change is one transaction that inserts the new version (or
 * grant row), raises the change counter, appends a `policy.changed` outbox row and writes the
 * `policy.changed` audit event, so the change and its record commit together. After the commit
 * the engine and the grant index are reloaded from storage, which also clears the decision
 * cache, so a change takes effect without a restart.
 */
export function createPolicyStore(deps: PolicyStoreDeps) {
  const { storage, engine, clock } = deps;
  const repository = createPolicyRepository(storage.db);
  let grants = new GrantIndex();
  let loadedGeneration = -1;

  /** Loads every current document and grant from storage into the engine. */
  async function reload(): Promise<void> {
    const generation = await repository.generation();
    const documents = (await repository.latest()).filter((row) => row.deleted === 0);
    const rows = await repository.listGrants();
    engine.load(documents.map(toDocument));
    grants = new GrantIndex(rows.map(toGrant));
    loadedGeneration = generation;
  }

  /**
   * Reloads when another process changed policies or grants since the last load; returns whether
   * it did. The composition root runs it periodically.
   */
  async function refreshIfChanged(): Promise<boolean> {
    if ((await repository.generation()) === loadedGeneration) return false;
    await reload();
    return true;
  }

  async function current(): Promise<PolicyVersionInfo[]> {
    return (await repository.latest()).filter((row) => row.deleted === 0).map(versionInfo);
  }

  async function history(name: string): Promise<PolicyVersionInfo[]> {
    const versions = (await repository.history(name)).map(versionInfo);
    if (versions.length === 0) throw policyNotFound(name);
    return versions;
  }

  /**
   * Stores `text` as the next version of document `name` after validating it, with every other
   * current document, against the schema. Applying the text of the current version changes
   * nothing. With `dryRun` only the validation runs.
   */
  async function apply(
    actor: Actor,
    name: string,
    text: string,
    options: { dryRun?: boolean } = {},
  ): Promise<ApplyOutcome> {
    if (Buffer.byteLength(text, "utf8") > MAX_POLICY_BYTES) {
      throw invalidArgument(
        "policy",
        name,
        `a policy document is at most ${MAX_POLICY_BYTES} bytes`,
      );
    }
    const latest = await repository.latest();
    const others = latest.filter((row) => row.deleted === 0 && row.name !== name);
    const previous = latest.find((row) => row.name === name);
    validateDocuments([
      ...others.map(toDocument),
      { name, version: (previous?.version ?? 0) + 1, text },
    ]);

    const sha256 = createHash("sha256").update(text, "utf8").digest("hex");
    if (previous !== undefined && previous.deleted === 0 && previous.sha256 === sha256) {
      return { policy: versionInfo(previous), changed: false, dryRun: options.dryRun === true };
    }
    const row: PolicyRow = {
      name,
      version: (previous?.version ?? 0) + 1,
      body: text,
      sha256,
      deleted: 0,
      created_at: clock.now(),
      created_by: actor.id,
    };
    if (options.dryRun === true) return { policy: versionInfo(row), changed: true, dryRun: true };

    const stored = await insertVersion(row, "applied");
    return { policy: versionInfo(stored), changed: true, dryRun: false };
  }

  /** Deletes document `name` by storing a deleted version; its history stays. */
  async function remove(actor: Actor, name: string): Promise<PolicyVersionInfo> {
    const previous = (await repository.latest()).find((row) => row.name === name);
    if (previous === undefined || previous.deleted === 1) throw policyNotFound(name);
    const row: PolicyRow = {
      name,
      version: previous.version + 1,
      body: "",
      sha256: createHash("sha256").update("", "utf8").digest("hex"),
      deleted: 1,
      created_at: clock.now(),
      created_by: actor.id,
    };
    return versionInfo(await insertVersion(row, "deleted"));
  }

  async function insertVersion(row: PolicyRow, change: "applied" | "deleted"): Promise<PolicyRow> {
    try {
      await storage.write(async (trx) => {
        await repository.insertVersion(row, trx);
        await recordChange(trx, row.created_at, {
          change,
          name: row.name,
          version: row.version,
          sha256: row.sha256,
        });
      });
    } catch (error) {
      // Another change of the same document committed version n first.
      if (constraintViolation(error) === "unique") {
        throw new ArborError(
          "CONCURRENT_UPDATE",
          `policy ${quote(row.name)} was changed concurrently; apply it again`,
        );
      }
      throw error;
    }
    await reloadAfterChange();
    return row;
  }

  async function listGrants(): Promise<PolicyGrant[]> {
    return (await repository.listGrants()).map(toGrant);
  }

  /** Creates a role or break-glass grant for an existing operator token or service principal. */
  async function createGrant(actor: Actor, input: GrantInput): Promise<PolicyGrant> {
    const now = clock.now();
    const row = validateGrant(input, now, actor.id);
    await requirePrincipalExists(input.principalId);

    await storage.write(async (trx) => {
      await repository.insertGrant(row, trx);
      await recordChange(trx, now, grantDetails("grant_created", row), row.id);
    });
    await reloadAfterChange();
    return toGrant(row);
  }

  /** Revokes a grant; revoking a revoked grant returns it unchanged. */
  async function revokeGrant(actor: Actor, id: string): Promise<PolicyGrant> {
    const found = GRANT_ID_PATTERN.test(id) ? await repository.findGrant(id) : undefined;
    if (found === undefined) {
      throw new ArborError("NOT_FOUND", `grant ${quote(id)} not found`, {
        parameter: "id",
        value: id,
      });
    }
    if (found.revoked_at !== null) return toGrant(found);

    const now = clock.now();
    await storage.write(async (trx) => {
      await repository.revokeGrant(id, now, trx);
      await recordChange(
        trx,
        now,
        { ...grantDetails("grant_revoked", found), revokedBy: actor.id },
        id,
      );
    });
    await reloadAfterChange();
    return toGrant({ ...found, revoked_at: now });
  }

  async function requirePrincipalExists(id: string): Promise<void> {
    const exists = id.startsWith("opt_")
      ? (await storage.operatorTokens.findById(id)) !== undefined
      : (await storage.servicePrincipals.findById(id)) !== undefined;
    if (!exists) {
      throw new ArborError("NOT_FOUND", `principal ${quote(id)} not found`, {
        parameter: "principal",
        value: id,
      });
    }
  }

  /**
   * Raises the change counter, announces the change on the outbox and writes its audit event,
   * all in the change's transaction. The request's route then does not write the event again.
   */
  async function recordChange(
    trx: Transaction<Database>,
    at: number,
    details: AuditEvent["details"],
    credentialId: string | null = null,
  ): Promise<void> {
    const generation = await repository.bumpGeneration(trx);
    await storage.outbox.append(POLICY_CHANGED_TOPIC, { ...details, generation }, at, trx);
    await deps.audit.writeInTransaction(trx, {
      type: "policy.changed",
      outcome: "success",
      at,
      ...actorFields(),
      keyId: null,
      keyVersion: null,
      chain: [],
      credentialId,
      errorCode: null,
      details: { ...details, generation },
    });
    currentActor()?.writtenInTransaction.add("policy.changed");
  }

  /**
   * Reloads after a committed change. The change was validated before it was stored, so a
   * failure here means storage failed; the next periodic refresh retries.
   */
  async function reloadAfterChange(): Promise<void> {
    try {
      await reload();
    } catch (error) {
      deps.logger.error(
        { err: error },
        "policies changed but could not be reloaded; retrying on the next refresh",
      );
      loadedGeneration = -1;
    }
  }

  return {
    reload,
    refreshIfChanged,
    current,
    history,
    apply,
    remove,
    listGrants,
    createGrant,
    revokeGrant,
    /** The grants in effect, for the authorizer. */
    grants: (): GrantIndex => grants,
  };
}

export type PolicyStore = ReturnType<typeof createPolicyStore>;

function validateGrant(input: GrantInput, now: number, createdBy: string): PolicyGrantRow {
  if (!PRINCIPAL_ID_PATTERN.test(input.principalId)) {
    throw invalidArgument(
      "principal",
      input.principalId,
      "name an operator token (opt_...) or a service principal (svc_...)",
    );
  }
  const reason = input.reason.trim();
  if (reason.length < 1 || reason.length > 256) {
    throw invalidArgument("reason", input.reason, "give a reason of 1 to 256 characters");
  }
  if ((input.role === undefined) === (input.breakGlass === undefined)) {
    throw invalidArgument("role", input.role ?? null, "a grant has either a role or breakGlass");
  }
  const ttlMs = input.ttlMs;
  if (ttlMs !== undefined && (!Number.isSafeInteger(ttlMs) || ttlMs < 1000)) {
    throw invalidArgument("ttl", ttlMs, "must be at least one second");
  }
  const base = {
    id: newOpaqueId("grt"),
    principal_id: input.principalId,
    reason,
    created_at: now,
    created_by: createdBy,
    revoked_at: null,
  };

  if (input.role !== undefined) {
    if (!ROLE_PATTERN.test(input.role)) {
      throw invalidArgument("role", input.role, "1 to 63 lower-case letters, digits or hyphens");
    }
    return {
      ...base,
      kind: "role",
      role: input.role,
      environment: null,
      tenant: null,
      expires_at: ttlMs === undefined ? null : now + ttlMs,
    };
  }

  const { environment, tenant = ANY } = input.breakGlass!;
  if (!SEGMENT_PATTERN.test(environment)) {
    throw invalidArgument(
      "environment",
      environment,
      "name one environment: [a-z0-9][a-z0-9-]{0,62}",
    );
  }
  if (tenant !== ANY && tenant !== "-" && !SEGMENT_PATTERN.test(tenant)) {
    throw invalidArgument(
      "tenant",
      tenant,
      `name one tenant, "-" for environment-level keys, or "*"`,
    );
  }
  if (ttlMs === undefined || ttlMs > MAX_BREAK_GLASS_TTL_MS) {
    throw invalidArgument(
      "ttl",
      ttlMs ?? null,
      "a break-glass grant needs a lifetime of at most 24h",
    );
  }
  return {
    ...base,
    kind: "break_glass",
    role: null,
    environment,
    tenant,
    expires_at: now + ttlMs,
  };
}

function grantDetails(
  change: "grant_created" | "grant_revoked",
  row: PolicyGrantRow,
): AuditEvent["details"] {
  return {
    change,
    grantId: row.id,
    principal: row.principal_id,
    kind: row.kind,
    role: row.role,
    environment: row.environment,
    tenant: row.tenant,
    expiresAt: row.expires_at,
    reason: row.reason,
  };
}

function toDocument(row: PolicyRow): StoredPolicyDocument {
  return { name: row.name, version: row.version, text: row.body };
}

function versionInfo(row: PolicyRow): PolicyVersionInfo {
  return {
    name: row.name,
    version: row.version,
    sha256: row.sha256,
    deleted: row.deleted === 1,
    createdAt: row.created_at,
    createdBy: row.created_by,
    text: row.body,
  };
}

function toGrant(row: PolicyGrantRow): PolicyGrant {
  return {
    id: row.id,
    principalId: row.principal_id,
    kind: row.kind,
    role: row.role,
    environment: row.environment,
    tenant: row.tenant,
    reason: row.reason,
    createdAt: row.created_at,
    createdBy: row.created_by,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
  };
}

function policyNotFound(name: string): ArborError {
  return new ArborError("NOT_FOUND", `policy ${quote(name)} not found`, {
    parameter: "name",
    value: name,
  });
}
