import type { Insertable } from "kysely";

import { ArborError } from "../errors/index.ts";
import type { AuditEventsTable, Executor } from "../storage/schema.ts";
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
      try {
        await committer.submit((trx) => insertEvent(trx, event));
      } catch (error) {
        throw auditUnavailable(error);
      }
    },
    writeInTransaction: insertEvent,
  };
}

export async function insertEvent(ex: Executor, event: AuditEvent): Promise<void> {
  await ex.insertInto("audit_events").values(toRow(event)).execute();
}

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
