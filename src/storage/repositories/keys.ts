import type { Insertable, Kysely, Selectable } from "kysely";

import type { Database, Executor, KeyKind, KeysTable } from "../schema.ts";

export type KeyRow = Selectable<KeysTable>;

export interface KeyFilter {
  environment?: string;
  tenant?: string;
  kind?: KeyKind;
  /** Path prefix, matched on whole segments (`prod` matches `prod/acme`, not `production`). */
  pathPrefix?: string;
}

export function createKeyRepository(db: Kysely<Database>) {
  return {
    async insert(row: Insertable<KeysTable>, ex: Executor = db): Promise<void> {
      await ex.insertInto("keys").values(row).execute();
    },

    async findById(id: string, ex: Executor = db): Promise<KeyRow | undefined> {
      return ex.selectFrom("keys").selectAll().where("id", "=", id).executeTakeFirst();
    },

    async findByPath(path: string, ex: Executor = db): Promise<KeyRow | undefined> {
      return ex.selectFrom("keys").selectAll().where("path", "=", path).executeTakeFirst();
    },

    async list(filter: KeyFilter = {}, ex: Executor = db): Promise<KeyRow[]> {
      let query = ex.selectFrom("keys").selectAll();
      if (filter.environment !== undefined)
        query = query.where("environment", "=", filter.environment);
      if (filter.tenant !== undefined) query = query.where("tenant", "=", filter.tenant);
      if (filter.kind !== undefined) query = query.where("kind", "=", filter.kind);
      if (filter.pathPrefix !== undefined) {
        const prefix = filter.pathPrefix;
        query = query.where((eb) =>
          eb.or([
            eb("path", "=", prefix),
            eb("path", "like", `${escapeLike(prefix)}/%`),
            eb("path", "like", `${escapeLike(prefix)}:%`),
          ]),
        );
      }
      return query.orderBy("path").execute();
    },

    async children(parentId: string, ex: Executor = db): Promise<KeyRow[]> {
      return ex
        .selectFrom("keys")
        .selectAll()
        .where("parent_id", "=", parentId)
        .orderBy("path")
        .execute();
    },

    async setMinDecryptionVersion(id: string, version: number, ex: Executor = db): Promise<void> {
      await ex
        .updateTable("keys")
        .set({ min_decryption_version: version })
        .where("id", "=", id)
        .execute();
    },
  };
}

export type KeyRepository = ReturnType<typeof createKeyRepository>;

// Path segments match [a-z0-9-], so '%' and '_' cannot appear; escaping keeps the helper honest anyway.
function escapeLike(value: string): string {
  return value.replace(/[%_\\]/g, (c) => `\\${c}`);
}
