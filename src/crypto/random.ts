import { randomFillSync } from "node:crypto";

/**
 * Bytes from the operating system's CSPRNG, filled in place so no other copy of them exists
 * (zeroing the result erases the only copy).
 */
export function randomBytes(length: number): Uint8Array {
  return randomFillSync(new Uint8Array(length));
}

// RFC 4648 base32 alphabet, lower-cased so ids are easy to read and copy.
const BASE32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

/**
 * Returns `<prefix>_` followed by 26 base32 characters (130 bits, of which 128 come from the CSPRNG
 * and the last 2 bits are zero). Used for key ids, token ids and data key ids.
 */
export function newOpaqueId(prefix: string): string {
  return `${prefix}_${encodeBase32(randomBytes(16))}`;
}

export function encodeBase32(bytes: Uint8Array): string {
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32_ALPHABET[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32_ALPHABET[(buffer << (5 - bits)) & 31];
  return out;
}

export const OPAQUE_ID_PATTERN = /^[a-z]+_[a-z2-7]{26}$/;
