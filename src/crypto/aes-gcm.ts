import { createCipheriv, createDecipheriv } from "node:crypto";

import { decryptionFailed, invalidArgument } from "../errors/index.ts";
import { randomBytes } from "./random.ts";

/** Size in bytes of the random nonce Arbor prepends to every sealed blob (96 bits). */
export const GCM_NONCE_BYTES = 12;
/** Size in bytes of every GCM tag Arbor produces or accepts (128 bits); shorter tags are rejected. */
export const GCM_TAG_BYTES = 16;
/** Size in bytes of every AES key Arbor generates (AES-256). */
export const AES_256_KEY_BYTES = 32;

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
 * nonce that came from a caller. Accepts 128, 192 and 256-bit keys so the vectors can run; Arbor's
 * own keys are always 256-bit.
 */
export function aesGcmEncryptDetached(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
): { ciphertext: Uint8Array; tag: Uint8Array } {
  const cipher = createCipheriv(gcmAlgorithm(key), key, nonce, { authTagLength: GCM_TAG_BYTES });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { ciphertext: new Uint8Array(ciphertext), tag: new Uint8Array(cipher.getAuthTag()) };
}

/** Decrypts and verifies a detached 16-byte tag; any failure is the uniform DECRYPTION_FAILED. */
export function aesGcmDecryptDetached(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  tag: Uint8Array,
  aad: Uint8Array,
): Uint8Array {
  // A short tag would make forgery far cheaper; OpenSSL would accept it if asked, so refuse here.
  if (tag.length !== GCM_TAG_BYTES) throw decryptionFailed();
  if (nonce.length === 0) throw decryptionFailed();

  try {
    const decipher = createDecipheriv(gcmAlgorithm(key), key, nonce, {
      authTagLength: GCM_TAG_BYTES,
    });
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    const plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    return new Uint8Array(plaintext.buffer, plaintext.byteOffset, plaintext.length);
  } catch (error) {
    throw decryptionFailed(error);
  }
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
