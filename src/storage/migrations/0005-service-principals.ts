import { type Kysely, type Migration, sql } from "kysely";

import type { Dialect } from "./types.ts";

/**
 * Service principals (OAuth clients), their client secrets, and the ids of revoked access tokens.
 * A principal names its service's `sign` key through a composite foreign key on (key id,
 * environment, tenant, kind), so a principal can never claim another environment or tenant than
 * the key that signs its tokens. Secrets are stored as SHA-256 hashes only. Revoked token ids are
 * kept until the token expires and are then pruned.
 */
export function servicePrincipalsMigration(dialect: Dialect): Migration {
  const bytes = dialect === "postgres" ? "bytea" : "blob";
  const int64 = "bigint";

  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("service_principals")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("environment", "text", (c) => c.notNull())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("service", "text", (c) => c.notNull())
        .addColumn("sign_key_id", "text", (c) => c.notNull())
        .addColumn("sign_key_kind", "text", (c) => c.notNull())
        .addColumn("scopes", "text", (c) => c.notNull())
        .addColumn("audiences", "text", (c) => c.notNull())
        .addColumn("max_token_ttl_ms", int64, (c) => c.notNull())
        .addColumn("created_at", int64, (c) => c.notNull())
        .addForeignKeyConstraint(
          "service_principals_sign_key_fk",
          ["sign_key_id", "environment", "tenant", "sign_key_kind"],
          "keys",
          ["id", "environment", "tenant", "kind"],
        )
        .addCheckConstraint("service_principals_kind_check", sql`sign_key_kind = 'service'`)
        .addCheckConstraint("service_principals_name_check", sql`length(name) between 1 and 64`)
        .addCheckConstraint("service_principals_ttl_check", sql`max_token_ttl_ms > 0`)
        .execute();
      await db.schema
        .createIndex("service_principals_scope_idx")
        .on("service_principals")
        .columns(["environment", "tenant", "service"])
        .execute();

      await db.schema
        .createTable("client_secrets")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("principal_id", "text", (c) => c.notNull().references("service_principals.id"))
        .addColumn("secret_hash", bytes, (c) => c.notNull().unique())
        .addColumn("created_at", int64, (c) => c.notNull())
        .addColumn("expires_at", int64)
        .addColumn("revoked_at", int64)
        .addCheckConstraint("client_secrets_hash_check", sql`length(secret_hash) = 32`)
        .addCheckConstraint(
          "client_secrets_times_check",
          sql`(expires_at is null or expires_at >= created_at)
            and (revoked_at is null or revoked_at >= created_at)`,
        )
        .execute();
      await db.schema
        .createIndex("client_secrets_principal_idx")
        .on("client_secrets")
        .column("principal_id")
        .execute();

      await db.schema
        .createTable("revoked_tokens")
        .addColumn("jti", "text", (c) => c.primaryKey())
        .addColumn("principal_id", "text", (c) => c.notNull().references("service_principals.id"))
        .addColumn("key_id", "text", (c) => c.notNull())
        .addColumn("key_version", "integer", (c) => c.notNull())
        .addColumn("expires_at", int64, (c) => c.notNull())
        .addColumn("revoked_at", int64, (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex("revoked_tokens_expiry_idx")
        .on("revoked_tokens")
        .column("expires_at")
        .execute();
    },
  };
}
