import { ArborError } from "../errors/index.ts";
import { CHECK_VALUE_BYTES, SEALED_ROOT_KEY_BYTES } from "./sealed-format.ts";
import type { SealedRootRecord, SealedRootVersionRecord } from "./types.ts";

/** The sealed root as loaded from the store, checked for shape and sorted by version. */
export interface StoredRoot {
  record: SealedRootRecord;
  /** Ascending by version; version 1 is always present. */
  versions: readonly SealedRootVersionRecord[];
  latestVersion: number;
}

/**
 * Checks what the store returned before any of it is used, so a damaged row fails here with
 * STORED_KEY_CORRUPT and a clear reason instead of as a confusing unseal failure later.
 */
export function validateStoredRoot(loaded: {
  record: SealedRootRecord;
  versions: readonly SealedRootVersionRecord[];
}): StoredRoot {
  const { record } = loaded;
  if (
    !Number.isSafeInteger(record.threshold) ||
    !Number.isSafeInteger(record.shares) ||
    record.threshold < 2 ||
    record.threshold > record.shares
  ) {
    throw corrupt(`threshold ${record.threshold} of ${record.shares} shares is not valid`);
  }
  if (record.checkValue.length !== CHECK_VALUE_BYTES) {
    throw corrupt(
      `the check value has ${record.checkValue.length} bytes, expected ${CHECK_VALUE_BYTES}`,
    );
  }

  const versions = [...loaded.versions].sort((a, b) => a.version - b.version);
  const seen = new Set<number>();
  for (const version of versions) {
    if (!Number.isSafeInteger(version.version) || version.version < 1) {
      throw corrupt(`root version number ${version.version} is not a positive integer`);
    }
    if (seen.has(version.version)) throw corrupt(`root version ${version.version} is stored twice`);
    seen.add(version.version);
    if (version.sealedKey.length !== SEALED_ROOT_KEY_BYTES) {
      throw corrupt(
        `sealed key of root version ${version.version} has ${version.sealedKey.length} bytes, expected ${SEALED_ROOT_KEY_BYTES}`,
      );
    }
  }
  if (!seen.has(1)) throw corrupt("root version 1 is missing");

  const latest = versions[versions.length - 1];
  return { record, versions, latestVersion: latest?.version ?? 1 };
}

/** Returns the stored root with one more version, as after a successful `addVersion`. */
export function withStoredVersion(
  stored: StoredRoot,
  version: SealedRootVersionRecord,
): StoredRoot {
  const others = stored.versions.filter((existing) => existing.version !== version.version);
  return validateStoredRoot({ record: stored.record, versions: [...others, version] });
}

function corrupt(reason: string): ArborError {
  return new ArborError("STORED_KEY_CORRUPT", `the stored sealed root is invalid: ${reason}`);
}
