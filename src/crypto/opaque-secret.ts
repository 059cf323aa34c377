import { crc32 } from "node:zlib";

import { ArborError, quote } from "../errors/index.ts";
import { randomBytes } from "./random.ts";
import { zeroize } from "./zero.ts";

/**
 * Opaque secrets look like `arbor_<type>_<random>_<crc32>`: a fixed prefix and type so leak
 * scanners can find them, 256 random bits in base62 (43 characters), and a CRC-32 of everything
 * before it in base62 (6 characters) so a mistyped or truncated secret is rejected without a
 * database look-up. The checksum is not a security control.
 */
export const secretTypes = {
  operator: "op",
  client: "cs",
} as const;

export type SecretType = keyof typeof secretTypes;

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_CHARS = 43;
const CHECKSUM_CHARS = 6;
const SECRET_PATTERN = /^arbor_([a-z]{2})_([0-9A-Za-z]{43})_([0-9A-Za-z]{6})$/;

export function generateOpaqueSecret(type: SecretType): string {
  const random = randomBytes(32);
  const body = `arbor_${secretTypes[type]}_${encodeBase62(random, RANDOM_CHARS)}`;
  zeroize(random);
  return `${body}_${checksum(body)}`;
}

/**
 * Checks the shape, the type and the checksum. The error quotes only the secret's type prefix,
 * never the secret.
 */
export function parseOpaqueSecret(secret: string, expectedType: SecretType): { type: SecretType } {
  const match = SECRET_PATTERN.exec(secret);
  if (!match) {
    throw new ArborError(
      "INVALID_SECRET",
      `malformed secret: expected the form arbor_${secretTypes[expectedType]}_<43 characters>_<6 characters>`,
      { parameter: "secret" },
    );
  }

  const [, typeTag, , sum] = match;
  if (typeTag !== secretTypes[expectedType]) {
    throw new ArborError(
      "INVALID_SECRET",
      `wrong secret type ${quote(`arbor_${typeTag}_`)}: expected arbor_${secretTypes[expectedType]}_`,
      { parameter: "secret", value: `arbor_${typeTag}_` },
    );
  }

  const body = secret.slice(0, secret.length - CHECKSUM_CHARS - 1);
  if (checksum(body) !== sum) {
    throw new ArborError(
      "INVALID_SECRET",
      "secret checksum does not match: the secret was mistyped or truncated",
      { parameter: "secret" },
    );
  }
  return { type: expectedType };
}

function checksum(body: string): string {
  const value = crc32(Buffer.from(body, "utf8")) >>> 0;
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value, false);
  return encodeBase62(bytes, CHECKSUM_CHARS);
}

/** Encodes big-endian bytes as a fixed-width base62 string, left-padded with '0'. */
function encodeBase62(bytes: Uint8Array, width: number): string {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  let out = "";
  while (value > 0n) {
    out = BASE62[Number(value % 62n)] + out;
    value /= 62n;
  }
  return out.padStart(width, "0");
}
