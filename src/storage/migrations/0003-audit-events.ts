import { type Kysely, type Migration } from "kysely";

import type { Dialect } from "./types.ts";

/**
 * The durable audit log. Rows are appended in commit order and never updated; `seq` gives that
 * order. Hash chaining and checkpoints are added by a later migration over the same rows.
 */
export function auditEventsMigration(dialect: Dialect): Migration {
  const int64 = "bigint";

  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("audit_events")
        .addColumn("seq", dialect === "postgres" ? "bigserial" : "integer", (c) =>
          dialect === "postgres" ? c.primaryKey() : c.primaryKey().autoIncrement(),
        )
        .addColumn("type", "text", (c) => c.notNull())
        .addColumn("outcome", "text", (c) => c.notNull())
        .addColumn("at", int64, (c) => c.notNull())
        .addColumn("principal_type", "text", (c) => c.notNull())
        .addColumn("principal_id", "text", (c) => c.notNull())
        .addColumn("source_address", "text")
        .addColumn("request_id", "text")
        .addColumn("key_id", "text")
        .addColumn("key_version", "integer")
        .addColumn("credential_id", "text")
        .addColumn("chain", "text", (c) => c.notNull())
        .addColumn("error_code", "text")
        .addColumn("details", "text", (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex("audit_events_credential_idx")
        .on("audit_events")
        .column("credential_id")
        .execute();
      await db.schema
        .createIndex("audit_events_key_idx")
        .on("audit_events")
        .columns(["key_id", "key_version"])
        .execute();
    },
  };
}
