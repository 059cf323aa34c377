import type { Kysely, Selectable } from "kysely";

import type { Database, Executor } from "../schema.ts";

/** Every version of every stored policy document; a deleted document's last version has `deleted` 1. */
export interface PoliciesTable {
  name: string;
  version: number;
  /** Cedar policy text; empty for a deletion. */
  body: string;
  /** Hex SHA-256 of `body`, so an apply of the same text is recognised as no change. */
  sha256: string;
  deleted: number;
  created_at: number;
  /** The principal id of the author. */
  created_by: string;
}

export interface PolicyGrantsTable {
  id: string;
  principal_id: string;
  kind: "role" | "break_glass";
  role: string | null;
  environment: string | null;
  tenant: string | null;
  reason: string;
  created_at: number;
  created_by: string;
  expires_at: number | null;
  revoked_at: number | null;
}

/** One row, raised by every policy or grant change in its transaction. */
export interface PolicyStateTable {
  id: number;
  generation: number;
}

/** The policy tables, which `0007-policies` creates; joined to the shared schema locally. */
export type PolicyTables = {
  policies: PoliciesTable;
  policy_grants: PolicyGrantsTable;
  policy_state: PolicyStateTable;
};

export type PolicyRow = Selectable<PoliciesTable>;
export type PolicyGrantRow = Selectable<PolicyGrantsTable>;

type PolicyExecutor = Kysely<Database & PolicyTables>;

function tables(ex: Executor): PolicyExecutor {
  return ex.withTables<PolicyTables>();
}

// PostgreSQL returns bigint columns as strings; SQLite returns numbers.
function policyRow(row: PolicyRow): PolicyRow {
  return { ...row, version: Number(row.version), created_at: Number(row.created_at) };
}

function grantRow(row: PolicyGrantRow): PolicyGrantRow {
  return {
    ...row,
    created_at: Number(row.created_at),
    expires_at: row.expires_at === null ? null : Number(row.expires_at),
    revoked_at: row.revoked_at === null ? null : Number(row.revoked_at),
  };
}

/** Stored policies, their versions, grants and the change counter. */
export function createPolicyRepository(db: Kysely<Database>) {
  return {
    /** The latest version of each document, deleted ones included, by name. */
    async latest(ex: Executor = db): Promise<PolicyRow[]> {
      const rows = await tables(ex)
        .selectFrom("policies as p")
        .selectAll("p")
        .where((eb) =>
          eb(
            "p.version",
            "=",
            eb
              .selectFrom("policies as q")
              .select(({ fn }) => fn.max("q.version").as("max"))
              .whereRef("q.name", "=", "p.name"),
          ),
        )
        .orderBy("p.name")
        .execute();
      return rows.map(policyRow);
    },

    /** Every version of one document, oldest first. */
    async history(name: string, ex: Executor = db): Promise<PolicyRow[]> {
      const rows = await tables(ex)
        .selectFrom("policies")
        .selectAll()
        .where("name", "=", name)
        .orderBy("version")
        .execute();
      return rows.map(policyRow);
    },

    async insertVersion(row: PolicyRow, ex: Executor = db): Promise<void> {
      await tables(ex).insertInto("policies").values(row).execute();
    },

    async listGrants(ex: Executor = db): Promise<PolicyGrantRow[]> {
      const rows = await tables(ex)
        .selectFrom("policy_grants")
        .selectAll()
        .orderBy("created_at")
        .orderBy("id")
        .execute();
      return rows.map(grantRow);
    },

    async findGrant(id: string, ex: Executor = db): Promise<PolicyGrantRow | undefined> {
      const row = await tables(ex)
        .selectFrom("policy_grants")
        .selectAll()
        .where("id", "=", id)
        .executeTakeFirst();
      return row === undefined ? undefined : grantRow(row);
    },

    async insertGrant(row: PolicyGrantRow, ex: Executor = db): Promise<void> {
      await tables(ex).insertInto("policy_grants").values(row).execute();
    },

    /** Sets `revoked_at` unless already set; returns whether the row changed. */
    async revokeGrant(id: string, now: number, ex: Executor = db): Promise<boolean> {
      const result = await tables(ex)
        .updateTable("policy_grants")
        .set({ revoked_at: now })
        .where("id", "=", id)
        .where("revoked_at", "is", null)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },

    async generation(ex: Executor = db): Promise<number> {
      const row = await tables(ex)
        .selectFrom("policy_state")
        .select("generation")
        .where("id", "=", 1)
        .executeTakeFirstOrThrow();
      return Number(row.generation);
    },

    /** Raises the change counter; call it in the transaction of every change. */
    async bumpGeneration(ex: Executor = db): Promise<number> {
      await tables(ex)
        .updateTable("policy_state")
        .set((eb) => ({ generation: eb("generation", "+", 1) }))
        .where("id", "=", 1)
        .execute();
      return this.generation(ex);
    },
  };
}

export type PolicyRepository = ReturnType<typeof createPolicyRepository>;
