import type { Clock } from "../clock.ts";
import { formatDuration } from "../config/duration.ts";
import { generateOpaqueSecret, newOpaqueId, parseOpaqueSecret } from "../crypto/index.ts";
import { ArborError, invalidArgument, isArborError } from "../errors/index.ts";
import { constraintViolation, type Executor, type Storage } from "../storage/index.ts";
import type { OperatorTokenRow } from "../storage/repositories/operator-tokens.ts";
import {
  assertCanGrant,
  isWithinScope,
  resolveScope,
  scopeFilter,
  validateName,
  validateRequestedScope,
} from "./scope.ts";
import { sha256SecretHashing, verifyHash, type SecretHashing } from "./secret-hash.ts";
import type {
  CreateOperatorTokenInput,
  OperatorAuthenticationFailure,
  OperatorPrincipal,
  OperatorScope,
  OperatorTokenInfo,
  OperatorTokenService,
} from "./types.ts";

export interface OperatorTokenServiceDeps {
  storage: Storage;
  clock: Clock;
  /** Maximum lifetime a created token may request, in milliseconds. Default 90 days. */
  maxTtlMs?: number;
  /** Lifetime of a created token that requests none, in milliseconds. Default 24 hours. */
  defaultTtlMs?: number;
  /** Digest and comparison of secrets. Default SHA-256 and a constant-time comparison. */
  secretHashing?: SecretHashing;
}

export const DEFAULT_MAX_TTL_MS = 90 * 86_400_000;
export const DEFAULT_TTL_MS = 86_400_000;
export const ROOT_TOKEN_NAME = "root";

/** The one message of every failed authentication, whatever the cause. */
export const OPERATOR_TOKEN_REJECTED_MESSAGE = "invalid, expired or revoked operator token";

export const OPERATOR_TOKEN_ID_PATTERN = /^opt_[a-z2-7]{26}$/;

/**
 * Creates the operator token service. Secrets are returned once and stored only as SHA-256
 * hashes. Every creation and revocation appends an outbox event in the same transaction.
 * Revoking a token does not revoke the tokens it created, but none of them outlives it, because
 * a created token's expiry is capped at its creator's.
 */
export function createOperatorTokenService(deps: OperatorTokenServiceDeps): OperatorTokenService {
  const { storage, clock } = deps;
  const hashing = deps.secretHashing ?? sha256SecretHashing;
  const maxTtlMs = positiveMs("maxTtlMs", deps.maxTtlMs ?? DEFAULT_MAX_TTL_MS);
  const defaultTtlMs = positiveMs("defaultTtlMs", deps.defaultTtlMs ?? DEFAULT_TTL_MS);
  if (defaultTtlMs > maxTtlMs) {
    throw invalidArgument("defaultTtlMs", defaultTtlMs, `must not exceed maxTtlMs (${maxTtlMs})`);
  }

  /** Generates the secret and its hash outside any transaction. */
  function newSecret(): { id: string; token: string; secretHash: Uint8Array } {
    const token = generateOpaqueSecret("operator");
    return { id: newOpaqueId("opt"), token, secretHash: hashing.digest(token) };
  }

  async function insertToken(row: OperatorTokenRow, trx: Executor): Promise<OperatorTokenInfo> {
    await storage.operatorTokens.insert(row, trx);
    const info = toInfo(row);
    await storage.outbox.append("operator_token.created", { ...info }, info.createdAt, trx);
    return info;
  }

  return {
    async createRootToken() {
      const { id, token, secretHash } = newSecret();

      const info = await storage
        .write(async (trx) => {
          const existing = await storage.operatorTokens.findLiveRoot(trx);
          if (existing !== undefined) throw rootExists(existing.id);

          const now = clock.now();
          return insertToken(
            {
              id,
              secret_hash: secretHash,
              name: ROOT_TOKEN_NAME,
              environment: null,
              tenant: null,
              read_only: 0,
              is_root: 1,
              created_at: now,
              expires_at: null,
              revoked_at: null,
              created_by: null,
            },
            trx,
          );
        })
        .catch((error: unknown) => {
          // Another node created a root token between this node's check and its insert.
          if (constraintViolation(error) === "unique") throw rootExists(null);
          throw error;
        });
      return { token, info };
    },

    async create(creator: OperatorPrincipal, input: CreateOperatorTokenInput) {
      if (creator.readOnly) throw readOnlyActor(creator.id, "create");
      const name = validateName(input.name);
      const ttlMs = validateTtl(input.ttlMs ?? defaultTtlMs, maxTtlMs);
      const requested = validateRequestedScope(input);

      const { id, token, secretHash } = newSecret();

      const info = await storage.write(async (trx) => {
        const now = clock.now();
        // The stored creator is authoritative: it may have been revoked or have expired since
        // the request authenticated, and its expiry caps the new token's.
        const creatorRow = await storage.operatorTokens.findById(creator.id, trx);
        if (creatorRow === undefined) throw rejected({ reason: "unknown", tokenId: null });
        const failure = liveness(creatorRow, now);
        if (failure !== null) throw rejected({ reason: failure, tokenId: creatorRow.id });
        const creatorScope = toScope(creatorRow);
        if (creatorScope.readOnly) throw readOnlyActor(creator.id, "create");

        const scope = resolveScope(creatorScope, requested);
        assertCanGrant(creator.id, creatorScope, scope);

        const creatorExpiresAt = nullableNumber(creatorRow.expires_at);
        const expiresAt =
          creatorExpiresAt === null ? now + ttlMs : Math.min(now + ttlMs, creatorExpiresAt);

        return insertToken(
          {
            id,
            secret_hash: secretHash,
            name,
            environment: scope.environment,
            tenant: scope.tenant,
            read_only: scope.readOnly ? 1 : 0,
            is_root: 0,
            created_at: now,
            expires_at: expiresAt,
            revoked_at: null,
            created_by: creator.id,
          },
          trx,
        );
      });
      return { token, info };
    },

    async authenticate(secret: string) {
      if (typeof secret !== "string") throw rejected({ reason: "malformed", tokenId: null });
      try {
        parseOpaqueSecret(secret, "operator");
      } catch (error) {
        if (isArborError(error, "INVALID_SECRET")) {
          throw rejected({ reason: "malformed", tokenId: null });
        }
        throw error;
      }

      const presented = hashing.digest(secret);
      const row = await storage.operatorTokens.findBySecretHash(presented);
      // The comparison runs even when no row matched, so unknown secrets cost the same work.
      const matches = verifyHash(hashing, presented, row?.secret_hash);
      if (row === undefined || !matches) throw rejected({ reason: "unknown", tokenId: null });

      const failure = liveness(row, clock.now());
      if (failure !== null) throw rejected({ reason: failure, tokenId: row.id });
      return toPrincipal(row);
    },

    async list(viewer: OperatorPrincipal) {
      const rows = await storage.operatorTokens.list(scopeFilter(viewer));
      return rows.map(toInfo);
    },

    async revoke(actor: OperatorPrincipal, id: string) {
      if (actor.readOnly) throw readOnlyActor(actor.id, "revoke");
      if (typeof id !== "string" || !OPERATOR_TOKEN_ID_PATTERN.test(id)) {
        // The value is not quoted: a caller who pastes a secret here must not see it echoed.
        throw new ArborError(
          "INVALID_ARGUMENT",
          'invalid id: expected "opt_" followed by 26 base32 characters',
          { parameter: "id" },
        );
      }

      return storage.write(async (trx) => {
        const row = await storage.operatorTokens.findById(id, trx);
        if (row === undefined || !isWithinScope(actor, row)) throw tokenNotFound(id);
        if (row.revoked_at !== null) return toInfo(row);

        // A wall clock stepped backwards must not put the revocation before the creation, which
        // the table's CHECK would reject.
        const now = Math.max(clock.now(), Number(row.created_at));
        const changed = await storage.operatorTokens.revoke(id, now, trx);
        if (!changed) return toInfo((await storage.operatorTokens.findById(id, trx)) ?? row);

        const info = toInfo({ ...row, revoked_at: now });
        await storage.outbox.append(
          "operator_token.revoked",
          {
            id: info.id,
            environment: info.environment,
            tenant: info.tenant,
            root: info.root,
            revokedAt: now,
            revokedBy: actor.id,
          },
          now,
          trx,
        );
        return info;
      });
    },
  };
}

function validateTtl(ttlMs: number, maxTtlMs: number): number {
  if (typeof ttlMs !== "number" || !Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
    throw invalidArgument("ttl", ttlMs, "must be a positive whole number of milliseconds");
  }
  if (ttlMs > maxTtlMs) {
    throw invalidArgument(
      "ttl",
      ttlMs,
      `must be at most ${maxTtlMs} ms (${formatDuration(maxTtlMs)}), the maximum operator token lifetime`,
    );
  }
  return ttlMs;
}

function positiveMs(parameter: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw invalidArgument(parameter, value, "must be a positive whole number of milliseconds");
  }
  return value;
}

/** Returns why the token is unusable at `now`, or null; it expires at the instant `expires_at`. */
function liveness(row: OperatorTokenRow, now: number): "revoked" | "expired" | null {
  if (row.revoked_at !== null) return "revoked";

  const expiresAt = nullableNumber(row.expires_at);
  if (expiresAt !== null && now >= expiresAt) return "expired";
  return null;
}

function rejected(failure: OperatorAuthenticationFailure): ArborError {
  return new ArborError("UNAUTHENTICATED", OPERATOR_TOKEN_REJECTED_MESSAGE, {}, { cause: failure });
}

function readOnlyActor(id: string, action: "create" | "revoke"): ArborError {
  return new ArborError(
    "FORBIDDEN",
    `operator token ${id} is read-only and cannot ${action} tokens: use a writable token`,
  );
}

function rootExists(id: string | null): ArborError {
  const which = id === null ? "a root token" : `root token ${id}`;
  return new ArborError(
    "ALREADY_INITIALIZED",
    `${which} already exists and is not revoked: revoke it before creating another`,
  );
}

function tokenNotFound(id: string): ArborError {
  return new ArborError("NOT_FOUND", `operator token ${id} not found`, {
    parameter: "id",
    value: id,
  });
}

// PostgreSQL returns bigint columns as strings; SQLite returns numbers.
function nullableNumber(value: number | string | null): number | null {
  return value === null ? null : Number(value);
}

function toScope(row: OperatorTokenRow): OperatorScope {
  return { environment: row.environment, tenant: row.tenant, readOnly: row.read_only === 1 };
}

function toPrincipal(row: OperatorTokenRow): OperatorPrincipal {
  return { type: "operator", id: row.id, root: row.is_root === 1, ...toScope(row) };
}

function toInfo(row: OperatorTokenRow): OperatorTokenInfo {
  return {
    id: row.id,
    name: row.name,
    ...toScope(row),
    root: row.is_root === 1,
    createdAt: Number(row.created_at),
    expiresAt: nullableNumber(row.expires_at),
    revokedAt: nullableNumber(row.revoked_at),
    createdBy: row.created_by,
  };
}
