import { type Kysely, type Migration, sql } from "kysely";

import type { Dialect } from "./types.ts";

/**
 * The PKCS#11 root: which token holds the keys and the label and CKA_ID of each root version and
 * of the audit checkpoint key pair. Nothing here is secret: the keys never leave the token and the
 * PIN is never stored. Versions are disabled (their keys can no longer encrypt or decrypt), never
 * deleted.
 */
export function pkcs11RootMigration(dialect: Dialect): Migration {
  const bytes = dialect === "postgres" ? "bytea" : "blob";
  const int64 = "bigint";

  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("pkcs11_root")
        .addColumn("id", "integer", (c) => c.primaryKey())
        .addColumn("token_label", "text", (c) => c.notNull())
        .addColumn("token_serial", "text", (c) => c.notNull())
        .addColumn("checkpoint_key_label", "text", (c) => c.notNull())
        .addColumn("checkpoint_key_id", bytes, (c) => c.notNull())
        .addColumn("checkpoint_public_jwk", "text", (c) => c.notNull())
        .addColumn("created_at", int64, (c) => c.notNull())
        .addCheckConstraint("pkcs11_root_singleton", sql`id = 1`)
        .addCheckConstraint(
          "pkcs11_root_labels_check",
          sql`length(token_label) between 1 and 32 and length(checkpoint_key_label) >= 1`,
        )
        .execute();

      await db.schema
        .createTable("pkcs11_root_versions")
        .addColumn("version", "integer", (c) => c.primaryKey())
        .addColumn("key_label", "text", (c) => c.notNull().unique())
        .addColumn("key_id", bytes, (c) => c.notNull())
        .addColumn("adopted", "integer", (c) => c.notNull())
        .addColumn("created_at", int64, (c) => c.notNull())
        .addColumn("disabled_at", int64)
        .addCheckConstraint("pkcs11_root_versions_version_check", sql`version >= 1`)
        .addCheckConstraint("pkcs11_root_versions_label_check", sql`length(key_label) >= 1`)
        .addCheckConstraint("pkcs11_root_versions_adopted_check", sql`adopted in (0, 1)`)
        .execute();
    },
  };
}
