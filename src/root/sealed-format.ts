import {
  AES_256_KEY_BYTES,
  GCM_NONCE_BYTES,
  GCM_TAG_BYTES,
  aesGcmOpen,
  aesGcmSeal,
  constantTimeEqual,
  encodeLengthPrefixed,
  hkdfSha256,
  zeroize,
} from "../crypto/index.ts";

/**
 * The stored format of the sealed root. Changing any tag below makes every existing deployment
 * unable to unseal or unwrap, so a new format gets new tags and code that reads both.
 *
 * - The unseal key (32 random bytes) exists only as Shamir shares outside the process.
 * - Each root version's key is stored as `aesGcmSeal(unsealKey, rootKey, AAD)` with
 *   AAD = length-prefixed ("arbor/sealed-root/v1", version), so a sealed key copied to another
 *   version number fails to open.
 * - The check value is HKDF-SHA256(unsealKey, empty salt, length-prefixed
 *   ("arbor/sealed-root/check/v1"), 32 bytes). It distinguishes a correctly combined unseal key
 *   from the wrong secret that Shamir combining returns for tampered or mismatched shares.
 * - A root wrap is `aesGcmSeal(rootKey[v], plaintext, AAD)` with AAD = length-prefixed
 *   ("arbor/root-wrap/v1", v, callerAad).
 */
const SEALED_ROOT_TAG = "arbor/sealed-root/v1";
const CHECK_VALUE_TAG = "arbor/sealed-root/check/v1";
const ROOT_WRAP_TAG = "arbor/root-wrap/v1";

export const UNSEAL_KEY_BYTES = 32;
export const ROOT_KEY_BYTES = AES_256_KEY_BYTES;
export const CHECK_VALUE_BYTES = 32;
/** Length of a sealed root key: nonce, 32-byte key, tag. */
export const SEALED_ROOT_KEY_BYTES = GCM_NONCE_BYTES + ROOT_KEY_BYTES + GCM_TAG_BYTES;

const EMPTY_SALT = new Uint8Array(0);

export function sealedRootKeyAad(version: number): Uint8Array {
  return encodeLengthPrefixed(SEALED_ROOT_TAG, version);
}

export function rootWrapAad(rootVersion: number, aad: Uint8Array): Uint8Array {
  return encodeLengthPrefixed(ROOT_WRAP_TAG, rootVersion, aad);
}

/** Encrypts one root version's key under the unseal key for storage. */
export function sealRootKey(
  unsealKey: Uint8Array,
  version: number,
  rootKey: Uint8Array,
): Uint8Array {
  return aesGcmSeal(unsealKey, rootKey, sealedRootKeyAad(version));
}

/**
 * Decrypts one stored root version's key. Throws DECRYPTION_FAILED when the unseal key is wrong
 * or the sealed key was modified or moved to another version number.
 */
export function openRootKey(
  unsealKey: Uint8Array,
  version: number,
  sealedKey: Uint8Array,
): Uint8Array {
  return aesGcmOpen(unsealKey, sealedKey, sealedRootKeyAad(version));
}

export function deriveCheckValue(unsealKey: Uint8Array): Uint8Array {
  return hkdfSha256(
    unsealKey,
    EMPTY_SALT,
    encodeLengthPrefixed(CHECK_VALUE_TAG),
    CHECK_VALUE_BYTES,
  );
}

/** Compares a candidate unseal key's check value with the stored one in constant time. */
export function checkValueMatches(candidateUnsealKey: Uint8Array, stored: Uint8Array): boolean {
  const derived = deriveCheckValue(candidateUnsealKey);
  try {
    return constantTimeEqual(derived, stored);
  } finally {
    zeroize(derived);
  }
}
