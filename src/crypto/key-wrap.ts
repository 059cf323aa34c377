import { createCipheriv, createDecipheriv } from "node:crypto";

import { decryptionFailed, invalidArgument } from "../errors/index.ts";
import { concatAndZeroChunks, zeroChunks } from "./chunks.ts";

// RFC 5649 section 3: the alternative initial value's 32-bit constant. OpenSSL's
// `id-aesNNN-wrap-pad` needs it passed explicitly; the 32-bit length indicator is appended by OpenSSL.
const RFC5649_AIV_PREFIX = Buffer.from("a65959a6", "hex");

/**
 * AES key wrap with padding (RFC 5649). Only for importing customer key material: it has no AAD,
 * so Arbor's own wraps use AES-256-GCM with a bound AAD instead.
 */
export function aesKeyWrapPad(kek: Uint8Array, keyData: Uint8Array): Uint8Array {
  if (keyData.length === 0) throw invalidArgument("keyData", "0 bytes", "nothing to wrap");

  const cipher = createCipheriv(wrapAlgorithm(kek), kek, RFC5649_AIV_PREFIX);
  return new Uint8Array(Buffer.concat([cipher.update(keyData), cipher.final()]));
}

/**
 * Unwraps an RFC 5649 blob. A wrong key, a tampered blob or bad padding are all DECRYPTION_FAILED.
 * A KEK that is not 16, 24 or 32 bytes is INVALID_ARGUMENT.
 */
export function aesKeyUnwrapPad(kek: Uint8Array, wrapped: Uint8Array): Uint8Array {
  const algorithm = wrapAlgorithm(kek);
  // The smallest wrapped output is one 64-bit integrity block plus one 64-bit data block.
  if (wrapped.length < 16 || wrapped.length % 8 !== 0) throw decryptionFailed();

  const chunks: Buffer[] = [];
  try {
    const decipher = createDecipheriv(algorithm, kek, RFC5649_AIV_PREFIX);
    chunks.push(decipher.update(wrapped));
    chunks.push(decipher.final());
  } catch (error) {
    zeroChunks(chunks);
    throw decryptionFailed(error);
  }
  return concatAndZeroChunks(chunks);
}

function wrapAlgorithm(kek: Uint8Array): string {
  switch (kek.length) {
    case 16:
      return "id-aes128-wrap-pad";
    case 24:
      return "id-aes192-wrap-pad";
    case 32:
      return "id-aes256-wrap-pad";
    default:
      throw invalidArgument(
        "kek",
        `${kek.length} bytes`,
        "a key-encryption key must be 16, 24 or 32 bytes",
      );
  }
}
