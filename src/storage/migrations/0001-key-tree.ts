import { type Kysely, type Migration, sql } from "kysely";

import type { Dialect } from "./types.ts";

/** The key tree, the sealed root, the outbox and issuance records. */
export function keyTreeMigration(dialect: Dialect): Migration {
  const bytes = dialect === "postgres" ? "bytea" : "blob";
  const int64 = "bigint";

  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("keys")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("path", "text", (c) => c.notNull().unique())
        .addColumn("kind", "text", (c) => c.notNull())
        .addColumn("environment", "text", (c) => c.notNull())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("service", "text", (c) => c.notNull())
        .addColumn("purpose", "text", (c) => c.notNull())
        .addColumn("algorithm", "text", (c) => c.notNull())
        .addColumn("mode", "text", (c) => c.notNull())
        .addColumn("parent_id", "text")
        .addColumn("parent_tenant", "text")
        .addColumn("parent_kind", "text")
        .addColumn("min_decryption_version", "integer", (c) => c.notNull())
        .addColumn("rotation_period_ms", int64)
        .addColumn("created_at", int64, (c) => c.notNull())
        // Referenced by the composite foreign key below and by key_versions.
        .addUniqueConstraint("keys_scope_unique", ["id", "environment", "tenant", "kind"])
        .addUniqueConstraint("keys_parent_unique", ["id", "parent_id"])
        // A parent must exist in the same environment, with the tenant and kind the child
        // claims for it. The CHECKs below decide which (tenant, kind) pairs a child may claim.
        .addForeignKeyConstraint(
          "keys_parent_scope_fk",
          ["parent_id", "environment", "parent_tenant", "parent_kind"],
          "keys",
          ["id", "environment", "tenant", "kind"],
        )
        .addCheckConstraint("keys_kind_check", sql`kind in ('master', 'service')`)
        .addCheckConstraint(
          "keys_segment_check",
          sql`length(environment) between 1 and 63 and length(tenant) between 1 and 63`,
        )
        // A foreign key with any null column is not checked (MATCH SIMPLE), so the parent
        // columns are either all null or all set.
        .addCheckConstraint(
          "keys_parent_columns_check",
          sql`(parent_id is null and parent_tenant is null and parent_kind is null)
            or (parent_id is not null and parent_tenant is not null and parent_kind is not null)`,
        )
        .addCheckConstraint(
          "keys_scope_check",
          sql`(kind = 'master' and parent_id is null and tenant = '-')
            or (kind = 'master' and parent_kind = 'master' and parent_tenant = '-' and tenant <> '-')
            or (kind = 'service' and parent_kind = 'master' and parent_tenant = tenant)`,
        )
        .addCheckConstraint(
          "keys_purpose_check",
          sql`(kind = 'master' and purpose = 'wrap' and algorithm = 'AES-256-GCM' and mode = 'wrapped')
            or (kind = 'service' and purpose = 'encrypt' and algorithm = 'AES-256-GCM'
                and mode in ('wrapped', 'derived'))
            or (kind = 'service' and purpose = 'sign' and algorithm in ('EdDSA', 'ES256')
                and mode = 'wrapped')`,
        )
        .addCheckConstraint("keys_min_version_check", sql`min_decryption_version >= 1`)
        .execute();

      await db.schema
        .createTable("key_versions")
        .addColumn("key_id", "text", (c) => c.notNull().references("keys.id"))
        .addColumn("version", "integer", (c) => c.notNull())
        .addColumn("state", "text", (c) => c.notNull())
        .addColumn("material", bytes)
        .addColumn("salt", bytes)
        .addColumn("public_jwk", "text")
        .addColumn("parent_key_id", "text")
        .addColumn("parent_version", "integer", (c) => c.notNull())
        .addColumn("created_at", int64, (c) => c.notNull())
        .addColumn("activate_at", int64)
        .addColumn("retire_at", int64)
        .addColumn("updated_at", int64, (c) => c.notNull())
        .addPrimaryKeyConstraint("key_versions_pk", ["key_id", "version"])
        // The wrapping version must belong to this key's parent key.
        .addForeignKeyConstraint(
          "key_versions_parent_key_fk",
          ["key_id", "parent_key_id"],
          "keys",
          ["id", "parent_id"],
        )
        .addForeignKeyConstraint(
          "key_versions_parent_version_fk",
          ["parent_key_id", "parent_version"],
          "key_versions",
          ["key_id", "version"],
        )
        .addCheckConstraint("key_versions_version_check", sql`version >= 1`)
        .addCheckConstraint(
          "key_versions_state_check",
          sql`state in ('pending', 'primary', 'active', 'disabled', 'revoked', 'destroyed')`,
        )
        .addCheckConstraint(
          "key_versions_material_check",
          sql`state = 'destroyed' or material is not null or salt is not null`,
        )
        .execute();

      // At most one primary version per key.
      await sql`create unique index key_versions_one_primary on key_versions (key_id) where state = 'primary'`.execute(
        db,
      );
      await db.schema
        .createIndex("key_versions_parent_idx")
        .on("key_versions")
        .columns(["parent_key_id", "parent_version"])
        .execute();
      await db.schema.createIndex("keys_parent_idx").on("keys").column("parent_id").execute();

      await db.schema
        .createTable("sealed_root")
        .addColumn("id", "integer", (c) => c.primaryKey())
        .addColumn("shares", "integer", (c) => c.notNull())
        .addColumn("threshold", "integer", (c) => c.notNull())
        .addColumn("check_value", bytes, (c) => c.notNull())
        .addColumn("created_at", int64, (c) => c.notNull())
        .addCheckConstraint("sealed_root_singleton", sql`id = 1`)
        .execute();
      await db.schema
        .createTable("sealed_root_versions")
        .addColumn("version", "integer", (c) => c.primaryKey())
        .addColumn("sealed_key", bytes, (c) => c.notNull())
        .addColumn("created_at", int64, (c) => c.notNull())
        .execute();

      await db.schema
        .createTable("outbox")
        .addColumn("id", dialect === "postgres" ? "bigserial" : "integer", (c) =>
          dialect === "postgres" ? c.primaryKey() : c.primaryKey().autoIncrement(),
        )
        .addColumn("topic", "text", (c) => c.notNull())
        .addColumn("payload", "text", (c) => c.notNull())
        .addColumn("created_at", int64, (c) => c.notNull())
        .execute();

      await db.schema
        .createTable("issuances")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("kind", "text", (c) => c.notNull())
        .addColumn("key_id", "text", (c) => c.notNull())
        .addColumn("key_version", "integer", (c) => c.notNull())
        .addColumn("principal", "text", (c) => c.notNull())
        .addColumn("issued_at", int64, (c) => c.notNull())
        .addColumn("expires_at", int64)
        .addColumn("revoked_at", int64)
        .addForeignKeyConstraint(
          "issuances_version_fk",
          ["key_id", "key_version"],
          "key_versions",
          ["key_id", "version"],
        )
        .addCheckConstraint(
          "issuances_kind_check",
          sql`kind in ('token', 'data_key', 'lease', 'certificate')`,
        )
        .execute();
      await db.schema
        .createIndex("issuances_version_idx")
        .on("issuances")
        .columns(["key_id", "key_version"])
        .execute();
      await db.schema
        .createIndex("issuances_expiry_idx")
        .on("issuances")
        .column("expires_at")
        .execute();
    },
  };
}
