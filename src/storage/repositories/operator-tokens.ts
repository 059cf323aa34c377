import type { Insertable, Kysely, Selectable } from "kysely";

import type { Database, Executor, OperatorTokensTable } from "../schema.ts";

export type OperatorTokenRow = Selectable<OperatorTokensTable>;

/** Filter for `list`: a set field keeps only rows with exactly that value. */
export interface OperatorTokenFilter {
  environment?: string;
  tenant?: string;
}

export function createOperatorTokenRepository(db: Kysely<Database>) {
  return {
    async insert(row: Insertable<OperatorTokensTable>, ex: Executor = db): Promise<void> {
      await ex.insertInto("operator_tokens").values(row).execute();
    },

    async findById(id: string, ex: Executor = db): Promise<OperatorTokenRow | undefined> {
      return ex.selectFrom("operator_tokens").selectAll().where("id", "=", id).executeTakeFirst();
    },

    async findBySecretHash(
      secretHash: Uint8Array,
      ex: Executor = db,
    ): Promise<OperatorTokenRow | undefined> {
      return ex
        .selectFrom("operator_tokens")
        .selectAll()
        .where("secret_hash", "=", secretHash)
        .executeTakeFirst();
    },

    /** Finds the root token that is not revoked, if any. A unique index allows at most one. */
    async findLiveRoot(ex: Executor = db): Promise<OperatorTokenRow | undefined> {
      return ex
        .selectFrom("operator_tokens")
        .selectAll()
        .where("is_root", "=", 1)
        .where("revoked_at", "is", null)
        .executeTakeFirst();
    },

    /** Lists tokens in creation order, including expired and revoked ones. */
    async list(filter: OperatorTokenFilter = {}, ex: Executor = db): Promise<OperatorTokenRow[]> {
      let query = ex.selectFrom("operator_tokens").selectAll();
      if (filter.environment !== undefined) {
        query = query.where("environment", "=", filter.environment);
      }
      if (filter.tenant !== undefined) query = query.where("tenant", "=", filter.tenant);
      return query.orderBy("created_at").orderBy("id").execute();
    },

    /** Sets `revoked_at` unless the token is already revoked; returns whether the row changed. */
    async revoke(id: string, now: number, ex: Executor = db): Promise<boolean> {
      const result = await ex
        .updateTable("operator_tokens")
        .set({ revoked_at: now })
        .where("id", "=", id)
        .where("revoked_at", "is", null)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },
  };
}

export type OperatorTokenRepository = ReturnType<typeof createOperatorTokenRepository>;
