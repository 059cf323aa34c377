import { invalidArgument } from "../errors/index.ts";

/**
 * Length-prefixed encoding for every AAD and KDF info Arbor builds. Each field is written as a
 * 4-byte big-endian length followed by its bytes, so no two different field lists encode to the
 * same bytes (joining with a separator alone would let "a|b" + "c" collide with "a" + "b|c").
 *
 * Field encodings: strings are UTF-8; integers are 8-byte big-endian unsigned; byte arrays are
 * copied as they are.
 */
export type EncodableField = string | number | bigint | Uint8Array;

const textEncoder = new TextEncoder();
const UINT64_MAX = 0xffff_ffff_ffff_ffffn;

/**
 * Encodes `fields` as described on {@link EncodableField}. Throws INVALID_ARGUMENT for a number
 * that is not a safe integer and for an integer outside 0 to 2^64 - 1.
 */
export function encodeLengthPrefixed(...fields: readonly EncodableField[]): Uint8Array {
  const parts = fields.map(encodeField);
  const total = parts.reduce((sum, part) => sum + 4 + part.length, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let offset = 0;
  for (const part of parts) {
    view.setUint32(offset, part.length, false);
    out.set(part, offset + 4);
    offset += 4 + part.length;
  }
  return out;
}

function encodeField(field: EncodableField, index: number): Uint8Array {
  if (typeof field === "string") return textEncoder.encode(field);
  if (field instanceof Uint8Array) return field;

  if (typeof field === "number" && !Number.isSafeInteger(field)) {
    throw invalidArgument(
      `fields[${index}]`,
      String(field),
      "an integer field must be a safe integer",
    );
  }
  const value = BigInt(field);
  if (value < 0n || value > UINT64_MAX) {
    throw invalidArgument(
      `fields[${index}]`,
      String(value),
      "an integer field must be 0 to 2^64 - 1",
    );
  }
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value, false);
  return bytes;
}
