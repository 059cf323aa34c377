import { type Kysely, type Migration, sql } from "kysely";

import type { Dialect } from "./types.ts";

/**
 * Stored Cedar policies and grants. `policies` keeps every version of every named document: a
 * change inserts the next version, a deletion inserts a version marked deleted, and nothing is
 * updated or removed, so the table is the policies' history. `policy_grants` attaches a role or a
 * break-glass grant to a principal id; a break-glass grant always names an environment and an
 * expiry. `policy_state` holds one counter that every change raises in its transaction, so a node
 * learns with one read whether its loaded policies are current.
 */
export function policiesMigration(_dialect: Dialect): Migration {
  const int64 = "bigint";

  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("policies")
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("version", "integer", (c) => c.notNull())
        .addColumn("body", "text", (c) => c.notNull())
        .addColumn("sha256", "text", (c) => c.notNull())
        .addColumn("deleted", "integer", (c) => c.notNull())
        .addColumn("created_at", int64, (c) => c.notNull())
        .addColumn("created_by", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("policies_pk", ["name", "version"])
        .addCheckConstraint("policies_name_check", sql`length(name) between 1 and 64`)
        .addCheckConstraint("policies_version_check", sql`version >= 1`)
        .addCheckConstraint(
          "policies_deleted_check",
          sql`deleted in (0, 1) and (deleted = 0 or body = '')`,
        )
        .execute();

      await db.schema
        .createTable("policy_grants")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("principal_id", "text", (c) => c.notNull())
        .addColumn("kind", "text", (c) => c.notNull())
        .addColumn("role", "text")
        .addColumn("environment", "text")
        .addColumn("tenant", "text")
        .addColumn("reason", "text", (c) => c.notNull())
        .addColumn("created_at", int64, (c) => c.notNull())
        .addColumn("created_by", "text", (c) => c.notNull())
        .addColumn("expires_at", int64)
        .addColumn("revoked_at", int64)
        // A role grant names a role and nothing else; a break-glass grant names an environment,
        // a tenant (or `*`) and an expiry, and no role.
        .addCheckConstraint(
          "policy_grants_kind_check",
          sql`(kind = 'role' and role is not null and environment is null and tenant is null)
            or (kind = 'break_glass' and role is null and environment is not null
                and tenant is not null and expires_at is not null)`,
        )
        .addCheckConstraint("policy_grants_reason_check", sql`length(reason) between 1 and 256`)
        .addCheckConstraint(
          "policy_grants_times_check",
          sql`(expires_at is null or expires_at > created_at)
            and (revoked_at is null or revoked_at >= created_at)`,
        )
        .execute();
      await db.schema
        .createIndex("policy_grants_principal_idx")
        .on("policy_grants")
        .column("principal_id")
        .execute();

      await db.schema
        .createTable("policy_state")
        .addColumn("id", "integer", (c) => c.primaryKey())
        .addColumn("generation", int64, (c) => c.notNull())
        .addCheckConstraint("policy_state_single_row", sql`id = 1`)
        .execute();
      await sql`insert into policy_state (id, generation) values (1, 0)`.execute(db);
    },
  };
}
