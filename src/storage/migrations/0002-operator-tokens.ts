import { type Kysely, type Migration, sql } from "kysely";

import type { Dialect } from "./types.ts";

/**
 * Operator tokens. Only the SHA-256 of each secret is stored, without a pepper, so a token can be
 * checked while the root is sealed. Rows are revoked, never deleted, which keeps `created_by`
 * pointing at an existing row.
 */
export function operatorTokensMigration(dialect: Dialect): Migration {
  const bytes = dialect === "postgres" ? "bytea" : "blob";
  const int64 = "bigint";

  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("operator_tokens")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("secret_hash", bytes, (c) => c.notNull().unique())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("environment", "text")
        .addColumn("tenant", "text")
        .addColumn("read_only", "integer", (c) => c.notNull())
        .addColumn("is_root", "integer", (c) => c.notNull())
        .addColumn("created_at", int64, (c) => c.notNull())
        .addColumn("expires_at", int64)
        .addColumn("revoked_at", int64)
        .addColumn("created_by", "text", (c) => c.references("operator_tokens.id"))
        .addCheckConstraint("operator_tokens_hash_check", sql`length(secret_hash) = 32`)
        .addCheckConstraint("operator_tokens_name_check", sql`length(name) between 1 and 64`)
        .addCheckConstraint(
          "operator_tokens_flags_check",
          sql`read_only in (0, 1) and is_root in (0, 1)`,
        )
        // A tenant only exists inside an environment, so a tenant scope needs both.
        .addCheckConstraint(
          "operator_tokens_scope_check",
          sql`(tenant is null or environment is not null)
            and (environment is null or length(environment) between 1 and 63)
            and (tenant is null or length(tenant) between 1 and 63)`,
        )
        // Root tokens reach everything, may write, and are made at init or by the root-token
        // ceremony rather than by another token.
        .addCheckConstraint(
          "operator_tokens_root_check",
          sql`is_root = 0
            or (environment is null and tenant is null and read_only = 0 and created_by is null)`,
        )
        // Every token except a root token expires and names the token that created it.
        .addCheckConstraint(
          "operator_tokens_expiry_check",
          sql`is_root = 1 or (expires_at is not null and created_by is not null)`,
        )
        .addCheckConstraint(
          "operator_tokens_times_check",
          sql`(expires_at is null or expires_at > created_at)
            and (revoked_at is null or revoked_at >= created_at)`,
        )
        .execute();

      // At most one root token that is not revoked.
      await sql`create unique index operator_tokens_one_live_root on operator_tokens (is_root)
        where is_root = 1 and revoked_at is null`.execute(db);
      await db.schema
        .createIndex("operator_tokens_scope_idx")
        .on("operator_tokens")
        .columns(["environment", "tenant"])
        .execute();
    },
  };
}
