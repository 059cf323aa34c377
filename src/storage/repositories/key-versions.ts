import type { Insertable, Kysely, Selectable, Updateable } from "kysely";

import type { Database, Executor, KeyVersionsTable, VersionState } from "../schema.ts";

export type KeyVersionRow = Selectable<KeyVersionsTable>;

export function createKeyVersionRepository(db: Kysely<Database>) {
  return {
    async insert(row: Insertable<KeyVersionsTable>, ex: Executor = db): Promise<void> {
      await ex.insertInto("key_versions").values(row).execute();
    },

    async find(
      keyId: string,
      version: number,
      ex: Executor = db,
    ): Promise<KeyVersionRow | undefined> {
      return ex
        .selectFrom("key_versions")
        .selectAll()
        .where("key_id", "=", keyId)
        .where("version", "=", version)
        .executeTakeFirst();
    },

    async list(keyId: string, ex: Executor = db): Promise<KeyVersionRow[]> {
      return ex
        .selectFrom("key_versions")
        .selectAll()
        .where("key_id", "=", keyId)
        .orderBy("version")
        .execute();
    },

    async primary(keyId: string, ex: Executor = db): Promise<KeyVersionRow | undefined> {
      return ex
        .selectFrom("key_versions")
        .selectAll()
        .where("key_id", "=", keyId)
        .where("state", "=", "primary")
        .executeTakeFirst();
    },

    async maxVersion(keyId: string, ex: Executor = db): Promise<number> {
      const row = await ex
        .selectFrom("key_versions")
        .select((eb) => eb.fn.max("version").as("max"))
        .where("key_id", "=", keyId)
        .executeTakeFirst();
      return Number(row?.max ?? 0);
    },

    /**
     * Moves a version to `to` only if it is currently in one of `from`; returns whether it moved.
     * The state check is in the UPDATE itself, so two concurrent transitions cannot both succeed.
     */
    async transition(
      keyId: string,
      version: number,
      from: readonly VersionState[],
      to: VersionState,
      now: number,
      extra: Updateable<KeyVersionsTable> = {},
      ex: Executor = db,
    ): Promise<boolean> {
      const result = await ex
        .updateTable("key_versions")
        .set({ ...extra, state: to, updated_at: now })
        .where("key_id", "=", keyId)
        .where("version", "=", version)
        .where("state", "in", from)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },

    /** Versions wrapped or derived by the given parent version: the next level of a cascade. */
    async wrappedBy(
      parentKeyId: string,
      parentVersion: number,
      ex: Executor = db,
    ): Promise<KeyVersionRow[]> {
      return ex
        .selectFrom("key_versions")
        .selectAll()
        .where("parent_key_id", "=", parentKeyId)
        .where("parent_version", "=", parentVersion)
        .orderBy("key_id")
        .orderBy("version")
        .execute();
    },

    /** Pending versions whose publish delay has passed. */
    async duePending(now: number, ex: Executor = db): Promise<KeyVersionRow[]> {
      return ex
        .selectFrom("key_versions")
        .selectAll()
        .where("state", "=", "pending")
        .where("activate_at", "<=", now)
        .orderBy("key_id")
        .orderBy("version")
        .execute();
    },
  };
}

export type KeyVersionRepository = ReturnType<typeof createKeyVersionRepository>;
