import { ArborError } from "../../errors/index.ts";
import type { Pkcs11RootRecord, Pkcs11RootVersionRecord } from "./types.ts";

/** The PKCS#11 root as loaded from the store, checked for shape and sorted by version. */
export interface StoredPkcs11Root {
  record: Pkcs11RootRecord;
  /** Ascending by version; version 1 is always present. */
  versions: readonly Pkcs11RootVersionRecord[];
  latestVersion: number;
}

/**
 * Checks what the store returned before any of it is used, so a damaged row fails here with
 * STORED_KEY_CORRUPT and a clear reason instead of as a confusing token error later.
 */
export function validateStoredPkcs11Root(loaded: {
  record: Pkcs11RootRecord;
  versions: readonly Pkcs11RootVersionRecord[];
}): StoredPkcs11Root {
  const { record } = loaded;
  if (record.tokenLabel === "") throw corrupt("the token label is empty");
  if (record.checkpointKeyLabel === "") throw corrupt("the checkpoint key label is empty");
  if (record.checkpointPublicJwk.kty !== "OKP" || record.checkpointPublicJwk.crv !== "Ed25519") {
    throw corrupt("the checkpoint public key is not an Ed25519 JWK");
  }

  const versions = [...loaded.versions].sort((a, b) => a.version - b.version);
  const seen = new Set<number>();
  for (const version of versions) {
    if (!Number.isSafeInteger(version.version) || version.version < 1) {
      throw corrupt(`root version number ${version.version} is not a positive integer`);
    }
    if (seen.has(version.version)) throw corrupt(`root version ${version.version} is stored twice`);
    seen.add(version.version);
    if (version.keyLabel === "") throw corrupt(`root version ${version.version} has no key label`);
  }
  if (!seen.has(1)) throw corrupt("root version 1 is missing");

  const latest = versions[versions.length - 1];
  return { record, versions, latestVersion: latest?.version ?? 1 };
}

/** Returns the stored root with `version` added or replaced. */
export function withVersion(
  stored: StoredPkcs11Root,
  version: Pkcs11RootVersionRecord,
): StoredPkcs11Root {
  const others = stored.versions.filter((existing) => existing.version !== version.version);
  return validateStoredPkcs11Root({ record: stored.record, versions: [...others, version] });
}

function corrupt(reason: string): ArborError {
  return new ArborError("STORED_KEY_CORRUPT", `the stored PKCS#11 root is invalid: ${reason}`);
}
