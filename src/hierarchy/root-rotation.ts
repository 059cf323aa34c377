import type { Clock } from "../clock.ts";
import { zeroize } from "../crypto/index.ts";
import { ArborError, isArborError } from "../errors/index.ts";
import type { RootProvider, RootVersion } from "../root/types.ts";
import type { Storage } from "../storage/storage.ts";
import { rootWrapAad } from "./binding.ts";
import type { TreeLogger } from "./types.ts";

/**
 * A root provider that can also switch off old root versions after every blob moved away from
 * them (the PKCS#11 provider sets CKA_ENCRYPT and CKA_DECRYPT false). The sealed provider has no
 * such method; its old versions simply stay.
 */
export type RotatableRoot = RootProvider & { disableVersion?: (version: number) => Promise<void> };

export interface RootRewrapProgress {
  /** Master versions this run found on older root versions. */
  total: number;
  /** Of those, how many were handled so far (re-wrapped, skipped or failed). */
  done: number;
  rewrapped: number;
  /** Versions another run moved first; the compare-and-set update found them changed. */
  skipped: number;
  /** The version just handled. */
  keyId: string;
  version: number;
}

export interface RootRewrapResult {
  /** The root version every environment master version is wrapped under now. */
  rootVersion: number;
  rewrapped: number;
  skipped: number;
  /** Root versions disabled after the re-wrap; empty for a provider without `disableVersion`. */
  disabledVersions: number[];
}

export interface RootRewrapOptions {
  storage: Storage;
  root: RotatableRoot;
  clock: Clock;
  logger: TreeLogger;
  /** Called after each master version; the run waits for a returned promise. */
  onProgress?: (progress: RootRewrapProgress) => void | Promise<void>;
}

/** Outbox topic of one master version moved to another root version. */
export const ROOT_REWRAPPED_TOPIC = "root.rewrapped";

interface MasterBlobRow {
  key_id: string;
  version: number;
  parent_version: number;
  material: Uint8Array;
  purpose: string;
  path: string;
}

/**
 * Re-wraps every environment master version (the versions the root wraps directly) under the
 * root's current version, then disables the older root versions if the provider can.
 *
 * Each version is unwrapped with the root version it records and wrapped again before any
 * transaction starts. One write transaction per version then replaces the material and the root
 * version only if the row still records the old root version (compare-and-set), and writes an
 * outbox row. The plaintext is zeroed right after the wrap. The run is resumable: versions already
 * under the current root version are not selected, so running it again after a crash finishes the
 * job. Every version is moved whatever its state, because a disabled or revoked version must stay
 * openable for cascades and re-wraps after the old root version is gone.
 *
 * Old root versions are disabled only when no version is left under them. A version that fails to
 * unwrap is logged and counted, the run goes on with the others and finally rejects with
 * STORED_KEY_CORRUPT, leaving every old root version enabled. SEALED and ROOT_UNAVAILABLE stop
 * the run at once; run it again later.
 *
 * NOTE: with several nodes, a node that has not yet learned of the rotation may still wrap a new
 * master version under the old root version between the final check and the disabling. That
 * version then fails to open, so run the rotation while no other node creates environment masters.
 */
export async function rewrapUnderNewRoot(options: RootRewrapOptions): Promise<RootRewrapResult> {
  const { storage, root, logger, onProgress } = options;
  const rootVersion = currentRootVersion(root);

  const rows = await mastersBelow(storage, rootVersion);
  let rewrapped = 0;
  let skipped = 0;
  const failed: { keyId: string; version: number }[] = [];

  for (const [index, row] of rows.entries()) {
    const moved = await rewrapOne(options, row, rootVersion).catch((error: unknown) => {
      if (!isArborError(error, "STORED_KEY_CORRUPT")) throw error;
      logger.error(
        {
          keyId: row.key_id,
          path: row.path,
          version: row.version,
          rootVersion: row.parent_version,
        },
        "environment master version failed to unwrap during the root re-wrap; it keeps its old root version",
      );
      failed.push({ keyId: row.key_id, version: row.version });
      return null;
    });
    if (moved === true) rewrapped += 1;
    if (moved === false) skipped += 1;

    await onProgress?.({
      total: rows.length,
      done: index + 1,
      rewrapped,
      skipped,
      keyId: row.key_id,
      version: row.version,
    });
  }

  if (failed.length > 0) {
    const listed = failed.map((entry) => `${entry.keyId}@${entry.version}`).join(", ");
    throw new ArborError(
      "STORED_KEY_CORRUPT",
      `${failed.length} environment master versions could not be re-wrapped under root version ${rootVersion} (${listed}); the older root versions stay enabled. Check these versions, then run the re-wrap again`,
    );
  }

  const remaining = await mastersBelow(storage, rootVersion);
  if (remaining.length > 0) {
    // Written by another node after this run selected its rows; a second run moves them.
    logger.warn(
      { rootVersion, remaining: remaining.length },
      "environment master versions under older root versions remain after the re-wrap; run it again before old root versions are disabled",
    );
    return { rootVersion, rewrapped, skipped, disabledVersions: [] };
  }

  const disabledVersions: number[] = [];
  if (typeof root.disableVersion === "function") {
    // Root versions are numbered 1..n without gaps, so every older one is below the current.
    for (let version = 1; version < rootVersion; version++) {
      await root.disableVersion(version);
      disabledVersions.push(version);
    }
  }
  return { rootVersion, rewrapped, skipped, disabledVersions };
}

/**
 * Rotates the root (a new current version) and re-wraps every environment master under it; see
 * `rewrapUnderNewRoot`. If the process stops during the re-wrap, call `rewrapUnderNewRoot` to
 * finish instead of rotating again.
 */
export async function rotateRoot(
  options: RootRewrapOptions,
): Promise<RootRewrapResult & { rotated: RootVersion }> {
  const rotated = await options.root.rotate();
  const result = await rewrapUnderNewRoot(options);
  return { ...result, rotated };
}

/** Number of environment master versions still wrapped under a root version below the current one. */
export async function pendingRootRewrap(storage: Storage, root: RootProvider): Promise<number> {
  return (await mastersBelow(storage, currentRootVersion(root))).length;
}

/** Moves one version; true when it was updated here, false when another run moved it first. */
async function rewrapOne(
  options: RootRewrapOptions,
  row: MasterBlobRow,
  rootVersion: number,
): Promise<boolean> {
  const { storage, root, clock } = options;
  const aad = rootWrapAad({ keyId: row.key_id, version: row.version, purpose: row.purpose });

  const plaintext = await root.unwrap(
    { rootVersion: row.parent_version, ciphertext: new Uint8Array(row.material) },
    aad,
  );
  let blob;
  try {
    blob = await root.wrap(plaintext, aad);
  } finally {
    zeroize(plaintext);
  }
  if (blob.rootVersion < rootVersion) {
    throw new ArborError(
      "INTERNAL",
      `the root wrapped under version ${blob.rootVersion} although version ${rootVersion} is current`,
    );
  }

  const now = clock.now();
  return storage.write(async (trx) => {
    const result = await trx
      .updateTable("key_versions")
      .set({ material: blob.ciphertext, parent_version: blob.rootVersion, updated_at: now })
      .where("key_id", "=", row.key_id)
      .where("version", "=", row.version)
      .where("parent_key_id", "is", null)
      .where("parent_version", "=", row.parent_version)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) return false;

    await storage.outbox.append(
      ROOT_REWRAPPED_TOPIC,
      {
        keyId: row.key_id,
        path: row.path,
        version: row.version,
        fromRootVersion: row.parent_version,
        toRootVersion: blob.rootVersion,
      },
      now,
      trx,
    );
    return true;
  });
}

async function mastersBelow(storage: Storage, rootVersion: number): Promise<MasterBlobRow[]> {
  const rows = await storage.db
    .selectFrom("key_versions")
    .innerJoin("keys", "keys.id", "key_versions.key_id")
    .select([
      "key_versions.key_id",
      "key_versions.version",
      "key_versions.parent_version",
      "key_versions.material",
      "keys.purpose",
      "keys.path",
    ])
    .where("key_versions.parent_key_id", "is", null)
    .where("key_versions.material", "is not", null)
    .where("key_versions.parent_version", "<", rootVersion)
    .orderBy("key_versions.key_id")
    .orderBy("key_versions.version")
    .execute();
  return rows.map((row) => ({ ...row, material: row.material! }));
}

function currentRootVersion(root: RootProvider): number {
  const status = root.status();
  if (status.state === "unsealed" && status.rootVersion !== null) return status.rootVersion;
  if (status.state === "uninitialized") {
    throw new ArborError(
      "NOT_INITIALIZED",
      "the root is not initialized; there is nothing to re-wrap",
    );
  }
  if (status.state === "unavailable") {
    throw new ArborError(
      "ROOT_UNAVAILABLE",
      "the root is unavailable; run the re-wrap again once it answers",
    );
  }
  throw new ArborError("SEALED", "the root is sealed: unseal it before re-wrapping");
}
