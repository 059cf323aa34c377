import type { Insertable, Kysely, Selectable } from "kysely";

import type { Database, Executor, IssuancesTable } from "../schema.ts";

export type IssuanceRow = Selectable<IssuancesTable>;

/** Issued credentials, indexed by key version and expiry so cascades are plain queries. */
export function createIssuanceRepository(db: Kysely<Database>) {
  return {
    async record(row: Insertable<IssuancesTable>, ex: Executor = db): Promise<void> {
      await ex.insertInto("issuances").values(row).execute();
    },

    async find(id: string, ex: Executor = db): Promise<IssuanceRow | undefined> {
      return ex.selectFrom("issuances").selectAll().where("id", "=", id).executeTakeFirst();
    },

    /** Credentials of one key version still live at `now` (not revoked, not expired). */
    async liveByKeyVersion(
      keyId: string,
      version: number,
      now: number,
      ex: Executor = db,
    ): Promise<IssuanceRow[]> {
      return ex
        .selectFrom("issuances")
        .selectAll()
        .where("key_id", "=", keyId)
        .where("key_version", "=", version)
        .where("revoked_at", "is", null)
        .where((eb) => eb.or([eb("expires_at", "is", null), eb("expires_at", ">", now)]))
        .orderBy("id")
        .execute();
    },

    async expiringBetween(from: number, to: number, ex: Executor = db): Promise<IssuanceRow[]> {
      return ex
        .selectFrom("issuances")
        .selectAll()
        .where("expires_at", ">=", from)
        .where("expires_at", "<", to)
        .orderBy("expires_at")
        .execute();
    },

    async revoke(id: string, now: number, ex: Executor = db): Promise<boolean> {
      const result = await ex
        .updateTable("issuances")
        .set({ revoked_at: now })
        .where("id", "=", id)
        .where("revoked_at", "is", null)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },
  };
}

export type IssuanceRepository = ReturnType<typeof createIssuanceRepository>;
