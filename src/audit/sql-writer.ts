import type { Insertable } from "kysely";

import { ArborError } from "../errors/index.ts";
import type { AuditEventsTable, Executor, IssuanceKind } from "../storage/schema.ts";
import type { GroupCommitter } from "./group-commit.ts";
import type { AuditEvent, AuditWriter } from "./types.ts";

/**
 * The durable audit writer over the `audit_events` table. `write` is group-committed: it resolves
 * once the event's transaction has committed (fsynced), and rejects with AUDIT_UNAVAILABLE when the
 * store cannot take it, so the caller hands out nothing.
 */
export function createSqlAuditWriter(committer: GroupCommitter): AuditWriter & {
  /** Writes the event inside an existing transaction, for state changes that carry their event. */
  writeInTransaction(ex: Executor, event: AuditEvent): Promise<void>;
} {
  return {
    async write(event) {
      // Checked before queueing, so a malformed issuance event fails alone instead of failing the batch it would join.
      requireIssuanceFields(event);
      try {
        await committer.submit((trx) => insertEvent(trx, event));
      } catch (error) {
        throw auditUnavailable(error);
      }
    },
    writeInTransaction: insertEvent,
  };
}

/**
 * Inserts the event, and for an issuance also its issuance record, so the record and its audit
 * event are durable together or not at all.
 */
export async function insertEvent(ex: Executor, event: AuditEvent): Promise<void> {
  await ex.insertInto("audit_events").values(toRow(event)).execute();

  const kind = requireIssuanceFields(event);
  if (
    kind === null ||
    event.credentialId === null ||
    event.keyId === null ||
    event.keyVersion === null
  )
    return;
  const expiresAt = event.details.expiresAt;
  await ex
    .insertInto("issuances")
    .values({
      id: event.credentialId,
      kind,
      key_id: event.keyId,
      key_version: event.keyVersion,
      principal: `${event.principal.type}:${event.principal.id}`,
      issued_at: event.at,
      expires_at: typeof expiresAt === "number" ? expiresAt : null,
      revoked_at: null,
    })
    .execute();
}

/** Returns the issuance kind of a successful issuance event, or null; throws if fields are missing. */
function requireIssuanceFields(event: AuditEvent): IssuanceKind | null {
  const kind = ISSUANCE_KINDS[event.type];
  if (kind === undefined || event.outcome !== "success") return null;
  if (event.credentialId === null || event.keyId === null || event.keyVersion === null) {
    throw auditUnavailable(
      new Error(`issuance event ${event.type} lacks its credential id or key version`),
    );
  }
  return kind;
}

/** Event types that hand out a credential, and the issuance kind each records. */
const ISSUANCE_KINDS: Partial<Record<AuditEvent["type"], IssuanceKind>> = {
  "data_key.issued": "data_key",
  // details.expiresAt carries the token's expiry, so revocation and cascades can skip dead tokens.
  "token.issued": "token",
};

function toRow(event: AuditEvent): Insertable<AuditEventsTable> {
  return {
    type: event.type,
    outcome: event.outcome,
    at: event.at,
    principal_type: event.principal.type,
    principal_id: event.principal.id,
    source_address: event.sourceAddress,
    request_id: event.requestId,
    key_id: event.keyId,
    key_version: event.keyVersion,
    credential_id: event.credentialId,
    chain: JSON.stringify(event.chain),
    error_code: event.errorCode,
    details: JSON.stringify(event.details),
  };
}

export function auditUnavailable(cause: unknown): ArborError {
  return new ArborError(
    "AUDIT_UNAVAILABLE",
    "the audit log cannot take events; nothing was handed out. Check the database and retry",
    {},
    { cause },
  );
}
