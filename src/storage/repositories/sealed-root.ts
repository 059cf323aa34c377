import type { Kysely } from "kysely";

import { ArborError } from "../../errors/index.ts";
import type { SealedRootStore, SealedRootVersionRecord } from "../../root/types.ts";
import { constraintViolation } from "../errors.ts";
import type { Database } from "../schema.ts";

/** SQL storage for the sealed root: share parameters, check value and sealed root versions. */
export function createSealedRootStore(db: Kysely<Database>): SealedRootStore {
  return {
    async load() {
      const record = await db
        .selectFrom("sealed_root")
        .selectAll()
        .where("id", "=", 1)
        .executeTakeFirst();
      if (record === undefined) return null;

      const versions = await db
        .selectFrom("sealed_root_versions")
        .selectAll()
        .orderBy("version")
        .execute();
      return {
        record: {
          shares: record.shares,
          threshold: record.threshold,
          checkValue: new Uint8Array(record.check_value),
          createdAt: Number(record.created_at),
        },
        versions: versions.map((v) => ({
          version: v.version,
          sealedKey: new Uint8Array(v.sealed_key),
          createdAt: Number(v.created_at),
        })),
      };
    },

    async create(record, first) {
      await rethrowDuplicate(
        "ALREADY_INITIALIZED",
        "the sealed root is already initialised; initialise only once",
        () =>
          db.transaction().execute(async (trx) => {
            await trx
              .insertInto("sealed_root")
              .values({
                id: 1,
                shares: record.shares,
                threshold: record.threshold,
                check_value: record.checkValue,
                created_at: record.createdAt,
              })
              .execute();
            await insertVersion(trx, first);
          }),
      );
    },

    async addVersion(version) {
      await rethrowDuplicate(
        "CONCURRENT_UPDATE",
        `root version ${version.version} was added concurrently; retry the rotation`,
        () => insertVersion(db, version),
      );
    },
  };
}

async function insertVersion(
  db: Kysely<Database>,
  version: SealedRootVersionRecord,
): Promise<void> {
  await db
    .insertInto("sealed_root_versions")
    .values({
      version: version.version,
      sealed_key: version.sealedKey,
      created_at: version.createdAt,
    })
    .execute();
}

/** Turns a unique-constraint violation (another node won a race) into a registry error. */
async function rethrowDuplicate(
  code: "ALREADY_INITIALIZED" | "CONCURRENT_UPDATE",
  message: string,
  work: () => Promise<void>,
): Promise<void> {
  try {
    await work();
  } catch (error) {
    if (constraintViolation(error) === "unique")
      throw new ArborError(code, message, {}, { cause: error });
    throw error;
  }
}
