import { invalidArgument } from "../errors/index.ts";
import { type ByteCursor, ByteWriter, malformedEnvelope } from "./cursor.ts";
import {
  MAX_CONTEXT_BYTES,
  MAX_CONTEXT_ENTRIES,
  MAX_CONTEXT_KEY_BYTES,
  MAX_CONTEXT_VALUE_BYTES,
} from "./format.ts";

/**
 * Encryption context: a caller-supplied map of strings that is bound to the ciphertext and
 * returned on decrypt. It is authenticated, never encrypted, so it must not contain secrets.
 */
export type EncryptionContext = Readonly<Record<string, string>>;

const textEncoder = new TextEncoder();
// `ignoreBOM` keeps a leading U+FEFF in the string, so decoding then encoding returns the same
// bytes. The default would strip it and let two byte strings decode to one context.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Validates a caller's context and returns its canonical encoding: a uint16 entry count, then
 * for each entry in ascending order of the key's UTF-8 bytes a uint16 key length, the key, a
 * uint16 value length and the value. Throws INVALID_ARGUMENT naming the offending entry.
 */
export function encodeContext(context: unknown): Uint8Array {
  const entries = contextEntries(context);
  if (entries.length > MAX_CONTEXT_ENTRIES) {
    throw invalidArgument(
      "context",
      `${entries.length} entries`,
      `an encryption context has at most ${MAX_CONTEXT_ENTRIES} entries`,
    );
  }

  const encoded = entries.map(([key, value]) => ({
    key: encodeContextString("context", key),
    value: encodeContextString(`context.${key}`, value),
  }));
  for (const { key } of encoded) {
    if (key.length === 0 || key.length > MAX_CONTEXT_KEY_BYTES) {
      throw invalidArgument(
        "context",
        textOf(key),
        `each context key must be 1 to ${MAX_CONTEXT_KEY_BYTES} bytes of UTF-8`,
      );
    }
  }
  for (const [index, { value }] of encoded.entries()) {
    if (value.length > MAX_CONTEXT_VALUE_BYTES) {
      throw invalidArgument(
        `context.${entries[index]?.[0]}`,
        `${value.length} bytes`,
        `each context value must be at most ${MAX_CONTEXT_VALUE_BYTES} bytes of UTF-8`,
      );
    }
  }

  // Object keys are unique strings, and UTF-8 is injective on well-formed strings, so the
  // byte keys are unique too and the sort order is total.
  encoded.sort((a, b) => Buffer.compare(a.key, b.key));

  const writer = new ByteWriter();
  writer.writeUint16(encoded.length);
  for (const { key, value } of encoded) {
    writer.writeUint16(key.length);
    writer.writeBytes(key);
    writer.writeUint16(value.length);
    writer.writeBytes(value);
  }
  const bytes = writer.toBytes();
  if (bytes.length > MAX_CONTEXT_BYTES) {
    throw invalidArgument(
      "context",
      `${bytes.length} bytes serialised`,
      `an encryption context serialises to at most ${MAX_CONTEXT_BYTES} bytes`,
    );
  }
  return bytes;
}

/**
 * Reads a context encoded by {@link encodeContext}. Anything but the canonical encoding
 * (unsorted or duplicate keys, invalid UTF-8, a limit exceeded) is DECRYPTION_FAILED, so each
 * context has exactly one encoding.
 */
export function readContext(cursor: ByteCursor): Record<string, string> {
  const start = cursor.offset;
  const count = cursor.readUint16();
  if (count > MAX_CONTEXT_ENTRIES) throw malformedEnvelope("too many context entries");

  const entries: Array<[string, string]> = [];
  let previousKey: Uint8Array | undefined;
  for (let index = 0; index < count; index += 1) {
    const keyLength = cursor.readUint16();
    if (keyLength === 0 || keyLength > MAX_CONTEXT_KEY_BYTES) {
      throw malformedEnvelope("context key length out of range");
    }
    requireContextBudget(cursor.offset + keyLength - start);
    const key = cursor.readBytes(keyLength);
    if (previousKey !== undefined && Buffer.compare(previousKey, key) >= 0) {
      throw malformedEnvelope("context keys are not strictly ascending");
    }
    previousKey = key;

    const valueLength = cursor.readUint16();
    if (valueLength > MAX_CONTEXT_VALUE_BYTES) {
      throw malformedEnvelope("context value length out of range");
    }
    requireContextBudget(cursor.offset + valueLength - start);
    const value = cursor.readBytes(valueLength);

    entries.push([decodeContextString(key), decodeContextString(value)]);
  }
  // Object.fromEntries defines own properties, so a key such as "__proto__" stays plain data.
  return Object.fromEntries(entries);
}

function contextEntries(context: unknown): Array<[string, unknown]> {
  if (context === undefined) return [];

  const prototype: unknown =
    typeof context === "object" && context !== null ? Object.getPrototypeOf(context) : undefined;
  if (prototype !== Object.prototype && prototype !== null) {
    throw invalidArgument(
      "context",
      context,
      "the encryption context must be a plain object mapping strings to strings",
    );
  }
  if (Object.getOwnPropertySymbols(context).length > 0) {
    throw invalidArgument("context", "symbol key", "context keys must be strings");
  }
  return Object.entries(context as Record<string, unknown>);
}

function encodeContextString(parameter: string, value: unknown): Uint8Array {
  if (typeof value !== "string") {
    throw invalidArgument(parameter, value, "context keys and values must be strings");
  }
  const bytes = textEncoder.encode(value);
  // A lone surrogate would be encoded as U+FFFD and come back as a different string.
  if (strictUtf8.decode(bytes) !== value) {
    throw invalidArgument(
      parameter,
      value,
      "context keys and values must be well-formed Unicode, without lone UTF-16 surrogates",
    );
  }
  return bytes;
}

function decodeContextString(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw malformedEnvelope("context is not valid UTF-8");
  }
}

function requireContextBudget(bytesSoFar: number): void {
  if (bytesSoFar > MAX_CONTEXT_BYTES) throw malformedEnvelope("context exceeds its size limit");
}

function textOf(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}
