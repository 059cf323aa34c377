import { createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";

import { encodeLengthPrefixed, hkdfSha256, zeroize } from "../crypto/index.ts";

const CHECKPOINT_KEY_TAG = "arbor/audit-checkpoint/v1";
const ED25519_SEED_BYTES = 32;
// DER of an RFC 8410 PKCS#8 Ed25519 private key up to the 32-byte seed: SEQUENCE, version 0,
// AlgorithmIdentifier id-Ed25519 (1.3.101.112), OCTET STRING wrapping an OCTET STRING of 32 bytes.
const ED25519_PKCS8_PREFIX = Uint8Array.from(
  Buffer.from("302e020100300506032b657004220420", "hex"),
);

export interface CheckpointKey {
  privateKey: KeyObject;
  publicJwk: JsonWebKey;
}

/**
 * Derives the audit checkpoint signing key (Ed25519) from root version 1's key with HKDF-SHA256
 * (empty salt, info length-prefixed "arbor/audit-checkpoint/v1"). Version 1 is used whatever the
 * current version is, so the public key stays the same across restarts and root rotations and old
 * checkpoints keep verifying.
 *
 * NOTE: a KeyObject cannot be zeroed from JavaScript. Sealing drops the reference, and the copy
 * inside OpenSSL stays until it is garbage-collected.
 */
export function deriveCheckpointKey(firstRootKey: Uint8Array): CheckpointKey {
  const seed = hkdfSha256(
    firstRootKey,
    new Uint8Array(0),
    encodeLengthPrefixed(CHECKPOINT_KEY_TAG),
    ED25519_SEED_BYTES,
  );
  const der = Buffer.alloc(ED25519_PKCS8_PREFIX.length + ED25519_SEED_BYTES);
  try {
    der.set(ED25519_PKCS8_PREFIX, 0);
    der.set(seed, ED25519_PKCS8_PREFIX.length);
    const privateKey = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
    return { privateKey, publicJwk: createPublicKey(privateKey).export({ format: "jwk" }) };
  } finally {
    zeroize(seed, der);
  }
}
