import { hkdfSync } from "node:crypto";

import { invalidArgument } from "../errors/index.ts";

/** RFC 5869 limits the output of HKDF-SHA256 to 255 hash lengths. */
export const HKDF_SHA256_MAX_OUTPUT = 255 * 32;

/**
 * HKDF-SHA256 (RFC 5869). `info` should come from `encodeLengthPrefixed` so that distinct
 * derivation contexts can never produce the same info bytes.
 */
export function hkdfSha256(
  ikm: Uint8Array,
  salt: Uint8Array,
  info: Uint8Array,
  length: number,
): Uint8Array {
  if (!Number.isInteger(length) || length < 1 || length > HKDF_SHA256_MAX_OUTPUT) {
    throw invalidArgument(
      "length",
      length,
      `HKDF-SHA256 output must be 1 to ${HKDF_SHA256_MAX_OUTPUT} bytes`,
    );
  }
  if (info.length > 1024) {
    // Node's OpenSSL binding limits info to 1024 bytes; say so instead of surfacing its error.
    throw invalidArgument("info", `${info.length} bytes`, "HKDF info must be at most 1024 bytes");
  }

  return new Uint8Array(hkdfSync("sha256", ikm, salt, info, length));
}
