import { createCipheriv, createDecipheriv } from "node:crypto";

import { decryptionFailed, invalidArgument } from "../errors/index.ts";
import { concatAndZeroChunks, zeroChunks } from "./chunks.ts";
import { randomBytes } from "./random.ts";

/** Size in bytes of the random nonce Arbor prepends to every sealed blob (96 bits). */
export const GCM_NONCE_BYTES = 12;
/** Size in bytes of every GCM tag Arbor produces or accepts (128 bits); shorter tags are rejected. */
export const GCM_TAG_BYTES = 16;
/** Size in bytes of every AES key Arbor generates (AES-256). */
export const AES_256_KEY_BYTES = 32;
/**
 * Largest nonce the detached functions take. GCM itself allows longer nonces, but Node's
 * `createCipheriv` rejects GCM nonces over 128 bytes (checked on Node 20.20.2).
 */
export const GCM_MAX_NONCE_BYTES = 128;

/**
 * Encrypts with AES-256-GCM under a fresh random 96-bit nonce and returns
 * `nonce || ciphertext || tag`. There is no variant that takes a nonce from the caller.
 */
export function aesGcmSeal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  requireKey256(key);

  const nonce = randomBytes(GCM_NONCE_BYTES);
  const { ciphertext, tag } = aesGcmEncryptDetached(key, nonce, plaintext, aad);
  const out = new Uint8Array(GCM_NONCE_BYTES + ciphertext.length + GCM_TAG_BYTES);
  out.set(nonce, 0);
  out.set(ciphertext, GCM_NONCE_BYTES);
  out.set(tag, GCM_NONCE_BYTES + ciphertext.length);
  return out;
}

/** Opens a blob made by {@link aesGcmSeal}; every failure is the uniform DECRYPTION_FAILED. */
export function aesGcmOpen(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array {
  requireKey256(key);
  if (sealed.length < GCM_NONCE_BYTES + GCM_TAG_BYTES) throw decryptionFailed();

  const nonce = sealed.subarray(0, GCM_NONCE_BYTES);
  const ciphertext = sealed.subarray(GCM_NONCE_BYTES, sealed.length - GCM_TAG_BYTES);
  const tag = sealed.subarray(sealed.length - GCM_TAG_BYTES);
  return aesGcmDecryptDetached(key, nonce, ciphertext, tag, aad);
}

/**
 * AES-GCM with an explicit nonce, for formats that derive a unique nonce themselves (envelope
 * frames use a per-message key and the frame index) and for published test vectors. Never pass a
 * nonce that came from a caller. Accepts 128, 192 and 256-bit keys and nonces of 1 to
 * {@link GCM_MAX_NONCE_BYTES} bytes so the vectors can run; Arbor's own keys are always 256-bit and
 * its nonces 96-bit. Throws INVALID_ARGUMENT for any other key or nonce size.
 */
export function aesGcmEncryptDetached(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
): { ciphertext: Uint8Array; tag: Uint8Array } {
  const algorithm = gcmAlgorithm(key);
  if (!isSupportedNonceLength(nonce.length)) {
    throw invalidArgument(
      "nonce",
      `${nonce.length} bytes`,
      `an AES-GCM nonce must be 1 to ${GCM_MAX_NONCE_BYTES} bytes (Arbor uses ${GCM_NONCE_BYTES})`,
    );
  }

  const cipher = createCipheriv(algorithm, key, nonce, { authTagLength: GCM_TAG_BYTES });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { ciphertext: new Uint8Array(ciphertext), tag: new Uint8Array(cipher.getAuthTag()) };
}

/**
 * Decrypts and verifies a detached 16-byte tag. A wrong key, nonce, AAD, ciphertext or tag, and a
 * tag or nonce of an unsupported size, all give the uniform DECRYPTION_FAILED. A key of the wrong
 * size is a caller bug and gives INVALID_ARGUMENT.
 */
export function aesGcmDecryptDetached(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  tag: Uint8Array,
  aad: Uint8Array,
): Uint8Array {
  const algorithm = gcmAlgorithm(key);
  // A short tag would make forgery far cheaper. OpenSSL accepts one if asked, so reject it here.
  if (tag.length !== GCM_TAG_BYTES) throw decryptionFailed();
  if (!isSupportedNonceLength(nonce.length)) throw decryptionFailed();

  // GCM returns plaintext from update() before final() checks the tag, so every chunk is zeroed
  // on failure and copied out and zeroed on success.
  const chunks: Buffer[] = [];
  try {
    const decipher = createDecipheriv(algorithm, key, nonce, { authTagLength: GCM_TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    chunks.push(decipher.update(ciphertext));
    chunks.push(decipher.final());
  } catch (error) {
    zeroChunks(chunks);
    throw decryptionFailed(error);
  }
  return concatAndZeroChunks(chunks);
}

function isSupportedNonceLength(length: number): boolean {
  return length >= 1 && length <= GCM_MAX_NONCE_BYTES;
}

function gcmAlgorithm(key: Uint8Array): "aes-128-gcm" | "aes-192-gcm" | "aes-256-gcm" {
  switch (key.length) {
    case 16:
      return "aes-128-gcm";
    case 24:
      return "aes-192-gcm";
    case 32:
      return "aes-256-gcm";
    default:
      throw invalidArgument("key", `${key.length} bytes`, "an AES key must be 16, 24 or 32 bytes");
  }
}

function requireKey256(key: Uint8Array): void {
  if (key.length !== AES_256_KEY_BYTES) {
    throw invalidArgument("key", `${key.length} bytes`, "Arbor keys are AES-256 (32 bytes)");
  }
}
