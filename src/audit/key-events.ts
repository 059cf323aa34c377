import type { Transaction } from "kysely";

import type { KeyChange } from "../hierarchy/types.ts";
import type { Database } from "../storage/schema.ts";
import type { SqlAuditWriter } from "./sql-writer.ts";
import { actorFields, currentActor } from "./context.ts";
import type { AuditEvent } from "./types.ts";

/**
 * Builds the audit event of a key change, written in the change's own transaction. `chain` names the
 * parent version that wraps or derives the new version and the version itself (`root@N` for an
 * environment master), which is the step `arbor audit trace` follows from a credential to the root.
 */
export function keyChangeEvent(change: KeyChange): AuditEvent {
  const parent =
    change.parentVersion === null
      ? null
      : `${change.parentKeyId ?? "root"}@${change.parentVersion}`;
  const self = change.version === null ? null : `${change.keyId}@${change.version}`;
  return {
    type: change.type,
    outcome: "success",
    at: change.at,
    ...actorFields(),
    keyId: change.keyId,
    keyVersion: change.version,
    chain: [parent, self].filter((ref): ref is string => ref !== null),
    credentialId: null,
    errorCode: null,
    details: {
      path: change.path,
      parentKeyId: change.parentKeyId,
      parentVersion: change.parentVersion,
    },
  };
}

/**
 * The key tree's `onChange` hook: writes each key change's event in the change's own transaction,
 * and tells the current request that its route event is written, so the route does not repeat it.
 */
export function auditKeyChanges(
  writer: Pick<SqlAuditWriter, "writeInTransaction">,
): (trx: Transaction<Database>, change: KeyChange) => Promise<void> {
  return async (trx, change) => {
    await writer.writeInTransaction(trx, keyChangeEvent(change));
    currentActor()?.writtenInTransaction.add(change.type);
  };
}
