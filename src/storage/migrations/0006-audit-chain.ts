import { type Kysely, type Migration, sql } from "kysely";

import { buildRecord, canonicalRecordBytes, GENESIS_HASH, recordHash } from "../../audit/record.ts";
import type { AuditEvent } from "../../audit/types.ts";
import type { Dialect } from "./types.ts";

interface LegacyRow {
  seq: number;
  type: string;
  outcome: string;
  at: number;
  principal_type: string;
  principal_id: string;
  source_address: string | null;
  request_id: string | null;
  key_id: string | null;
  key_version: number | null;
  credential_id: string | null;
  chain: string;
  error_code: string | null;
  details: string;
}

/**
 * Chains the audit log. Each row gains its canonical record (RFC 8785 JSON, the bytes that are
 * hashed), the previous record's hash and its own hash; rows written before this migration are
 * chained here, in sequence order, so the whole log verifies. Adds signed checkpoints (tree heads),
 * exporter cursors, the wrapped audit HMAC key and the retention anchor.
 */
export function auditChainMigration(dialect: Dialect): Migration {
  const bytes = dialect === "postgres" ? "bytea" : "blob";
  const int64 = "bigint";

  return {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable("audit_events").addColumn("prev_hash", "text").execute();
      await db.schema.alterTable("audit_events").addColumn("hash", "text").execute();
      await db.schema.alterTable("audit_events").addColumn("record", "text").execute();

      const rows = (await db
        .selectFrom("audit_events" as never)
        .selectAll()
        .orderBy("seq" as never)
        .execute()) as LegacyRow[];
      let prevHash = GENESIS_HASH;
      for (const row of rows) {
        const record = buildRecord(legacyEvent(row), row.seq, prevHash);
        const hash = recordHash(record);
        await db
          .updateTable("audit_events" as never)
          .set({
            prev_hash: prevHash,
            hash,
            record: Buffer.from(canonicalRecordBytes(record)).toString("utf8"),
          } as never)
          .where("seq" as never, "=", row.seq as never)
          .execute();
        prevHash = hash;
      }

      await db.schema
        .createTable("audit_checkpoints")
        .addColumn("tree_size", int64, (c) => c.primaryKey())
        .addColumn("prev_tree_size", int64, (c) => c.notNull())
        .addColumn("root_hash", "text", (c) => c.notNull())
        .addColumn("at", int64, (c) => c.notNull())
        // The signed checkpoint as exported: `{body, signature}` JSON.
        .addColumn("signed", "text", (c) => c.notNull())
        .addCheckConstraint("audit_checkpoints_size_check", sql`tree_size > prev_tree_size`)
        .execute();

      await db.schema
        .createTable("audit_export_cursors")
        .addColumn("exporter", "text", (c) => c.primaryKey())
        .addColumn("seq", int64, (c) => c.notNull())
        .addColumn("updated_at", int64, (c) => c.notNull())
        .execute();

      await db.schema
        .createTable("audit_keys")
        .addColumn("id", "integer", (c) => c.primaryKey())
        .addColumn("root_version", "integer", (c) => c.notNull())
        .addColumn("wrapped", bytes, (c) => c.notNull())
        .addColumn("created_at", int64, (c) => c.notNull())
        .addCheckConstraint("audit_keys_single_check", sql`id = 1`)
        .execute();

      await db.schema
        .createTable("audit_anchor")
        .addColumn("id", "integer", (c) => c.primaryKey())
        // Records up to and including this sequence number were pruned by retention.
        .addColumn("pruned_through", int64, (c) => c.notNull())
        .addColumn("last_hash", "text", (c) => c.notNull())
        // Merkle frontier (perfect-subtree roots) of the pruned prefix, JSON.
        .addColumn("frontier", "text", (c) => c.notNull())
        .addColumn("at", int64, (c) => c.notNull())
        .addCheckConstraint("audit_anchor_single_check", sql`id = 1`)
        .execute();
    },
  };
}

function legacyEvent(row: LegacyRow): AuditEvent {
  return {
    type: row.type as AuditEvent["type"],
    outcome: row.outcome as AuditEvent["outcome"],
    at: Number(row.at),
    principal: {
      type: row.principal_type as AuditEvent["principal"]["type"],
      id: row.principal_id,
    },
    sourceAddress: row.source_address,
    requestId: row.request_id,
    keyId: row.key_id,
    keyVersion: row.key_version,
    chain: JSON.parse(row.chain) as string[],
    credentialId: row.credential_id,
    errorCode: row.error_code,
    details: JSON.parse(row.details) as AuditEvent["details"],
  };
}
