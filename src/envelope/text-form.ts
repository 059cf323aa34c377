import { invalidArgument } from "../errors/index.ts";

/** Prefix of the text form of a binary envelope; the format version is also inside the bytes. */
export const TEXT_FORM_PREFIX = "arbor:v1:";

const BASE64URL_BODY = /^[A-Za-z0-9_-]+$/;

/** Encodes a binary envelope as `arbor:v1:` followed by unpadded base64url, for JSON and text. */
export function toTextForm(envelope: Uint8Array): string {
  if (!(envelope instanceof Uint8Array) || envelope.length === 0) {
    throw invalidArgument("ciphertext", typeof envelope, "expected a non-empty binary envelope");
  }
  return (
    TEXT_FORM_PREFIX +
    Buffer.from(envelope.buffer, envelope.byteOffset, envelope.length).toString("base64url")
  );
}

/**
 * Decodes the text form back to the binary envelope. Only the exact form `toTextForm` produces
 * is accepted: no padding, no whitespace, no other alphabet, no non-zero trailing bits. Anything
 * else is INVALID_ARGUMENT on parameter "ciphertext"; whether the bytes are a valid envelope is
 * decided later by decryption.
 */
export function fromTextForm(text: string): Uint8Array {
  if (typeof text !== "string" || !text.startsWith(TEXT_FORM_PREFIX)) {
    throw invalidArgument(
      "ciphertext",
      describe(text),
      `expected text starting with ${TEXT_FORM_PREFIX}`,
    );
  }

  const body = text.slice(TEXT_FORM_PREFIX.length);
  // Buffer.from(..., "base64url") skips characters outside the alphabet, so check the
  // alphabet first and then that re-encoding gives back the same text.
  if (!BASE64URL_BODY.test(body) || body.length % 4 === 1) {
    throw invalidArgument(
      "ciphertext",
      describe(text),
      `expected ${TEXT_FORM_PREFIX} followed by unpadded base64url`,
    );
  }
  const bytes = Buffer.from(body, "base64url");
  if (bytes.toString("base64url") !== body) {
    throw invalidArgument(
      "ciphertext",
      describe(text),
      "the base64url text is not in canonical form",
    );
  }
  // Copy out of Node's shared Buffer pool, so the result owns its whole ArrayBuffer.
  return new Uint8Array(bytes);
}

/** Describes a rejected ciphertext without quoting it: ciphertexts are never echoed back. */
export function describe(text: unknown): string {
  return typeof text === "string" ? `(${text.length} characters)` : `(${typeof text})`;
}
