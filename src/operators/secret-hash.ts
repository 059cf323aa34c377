import { createHash } from "node:crypto";

import { constantTimeEqual } from "../crypto/index.ts";

/**
 * The two steps that check a presented secret against a stored hash. The service receives them as
 * a dependency so that a test can count the work done on each authentication path.
 */
export interface SecretHashing {
  /** SHA-256 of the whole secret string, UTF-8 encoded (32 bytes). */
  digest(secret: string): Uint8Array;
  /** Compares two digests in constant time. */
  equal(a: Uint8Array, b: Uint8Array): boolean;
}

export function hashSecret(secret: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(secret, "utf8").digest());
}

export const sha256SecretHashing: SecretHashing = {
  digest: hashSecret,
  equal: constantTimeEqual,
};

/**
 * Stands in for the stored hash when no row matches, so an unknown token costs the same
 * comparison as a known one. The input contains spaces, so no well-formed secret hashes to it.
 */
export const UNKNOWN_TOKEN_HASH: Uint8Array = hashSecret("arbor operator token: no such token");

/**
 * Compares the presented digest with the stored one, or with `UNKNOWN_TOKEN_HASH` when there is
 * no stored row, and returns true only for a stored row whose hash matches.
 */
export function verifyHash(
  hashing: SecretHashing,
  presented: Uint8Array,
  stored: Uint8Array | undefined,
): boolean {
  const matches = hashing.equal(presented, stored ?? UNKNOWN_TOKEN_HASH);
  return stored !== undefined && matches;
}
