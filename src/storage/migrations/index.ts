import { type Kysely, type Migration, type MigrationProvider, Migrator } from "kysely";

import { ArborError } from "../../errors/index.ts";
import { keyTreeMigration } from "./0001-key-tree.ts";
import { operatorTokensMigration } from "./0002-operator-tokens.ts";
import { auditEventsMigration } from "./0003-audit-events.ts";
import { pkcs11RootMigration } from "./0004-pkcs11-root.ts";
import { servicePrincipalsMigration } from "./0005-service-principals.ts";
import { auditChainMigration } from "./0006-audit-chain.ts";
import { policiesMigration } from "./0007-policies.ts";
import type { Dialect } from "./types.ts";

export type { Dialect } from "./types.ts";

/**
 * Versioned migrations, applied in name order at start. A released migration never changes; a
 * schema change is a new entry. Each takes the dialect because the two disagree on a few column
 * types (blob/bytea, autoincrement).
 */
function migrations(dialect: Dialect): Record<string, Migration> {
  return {
    "0001_key_tree": keyTreeMigration(dialect),
    "0002_operator_tokens": operatorTokensMigration(dialect),
    "0003_audit_events": auditEventsMigration(dialect),
    "0004_pkcs11_root": pkcs11RootMigration(dialect),
    "0005_service_principals": servicePrincipalsMigration(dialect),
    "0006_audit_chain": auditChainMigration(dialect),
    "0007_policies": policiesMigration(dialect),
  };
}
class InlineMigrations implements MigrationProvider {
  constructor(private readonly dialect: Dialect) {}

  getMigrations(): Promise<Record<string, Migration>> {
    return Promise.resolve(migrations(this.dialect));
  }
}

/** Applies every pending migration; fails loudly if one fails, leaving the schema as it was. */
export async function migrateToLatest(db: Kysely<unknown>, dialect: Dialect): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new InlineMigrations(dialect) });
  const { error, results } = await migrator.migrateToLatest();
  if (error !== undefined) {
    const failed = results?.find((result) => result.status === "Error")?.migrationName ?? "unknown";
    throw new ArborError(
      "STORAGE_UNAVAILABLE",
      `database migration ${failed} failed`,
      {},
      {
        cause: error,
      },
    );
  }
  return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
}
