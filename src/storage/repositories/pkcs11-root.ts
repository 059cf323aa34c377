import type { JsonWebKey } from "node:crypto";

import type { Kysely } from "kysely";

import { ArborError } from "../../errors/index.ts";
import type { Pkcs11RootStore, Pkcs11RootVersionRecord } from "../../root/pkcs11/types.ts";
import { constraintViolation } from "../errors.ts";
import type { Database, Executor } from "../schema.ts";

/** SQL storage for the PKCS#11 root: the token, the checkpoint key pair and the root versions. */
export function createPkcs11RootStore(db: Kysely<Database>): Pkcs11RootStore {
  return {
    async load() {
      const record = await db
        .selectFrom("pkcs11_root")
        .selectAll()
        .where("id", "=", 1)
        .executeTakeFirst();
      if (record === undefined) return null;

      const versions = await db
        .selectFrom("pkcs11_root_versions")
        .selectAll()
        .orderBy("version")
        .execute();
      return {
        record: {
          tokenLabel: record.token_label,
          tokenSerial: record.token_serial,
          checkpointKeyLabel: record.checkpoint_key_label,
          checkpointKeyId: new Uint8Array(record.checkpoint_key_id),
          checkpointPublicJwk: JSON.parse(record.checkpoint_public_jwk) as JsonWebKey,
          createdAt: Number(record.created_at),
        },
        versions: versions.map((v) => ({
          version: v.version,
          keyLabel: v.key_label,
          keyId: new Uint8Array(v.key_id),
          adopted: v.adopted === 1,
          createdAt: Number(v.created_at),
          disabledAt: v.disabled_at === null ? null : Number(v.disabled_at),
        })),
      };
    },

    async create(record, first) {
      await rethrowDuplicate(
        "ALREADY_INITIALIZED",
        "the PKCS#11 root is already initialised; initialise only once",
        () =>
          db.transaction().execute(async (trx) => {
            await trx
              .insertInto("pkcs11_root")
              .values({
                id: 1,
                token_label: record.tokenLabel,
                token_serial: record.tokenSerial,
                checkpoint_key_label: record.checkpointKeyLabel,
                checkpoint_key_id: record.checkpointKeyId,
                checkpoint_public_jwk: JSON.stringify(record.checkpointPublicJwk),
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

    async markDisabled(version, at) {
      await db
        .updateTable("pkcs11_root_versions")
        .set({ disabled_at: at })
        .where("version", "=", version)
        .where("disabled_at", "is", null)
        .execute();
    },
  };
}

async function insertVersion(ex: Executor, version: Pkcs11RootVersionRecord): Promise<void> {
  await ex
    .insertInto("pkcs11_root_versions")
    .values({
      version: version.version,
      key_label: version.keyLabel,
      key_id: version.keyId,
      adopted: version.adopted ? 1 : 0,
      created_at: version.createdAt,
      disabled_at: version.disabledAt,
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
