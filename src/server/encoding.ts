import { ArborError } from "../errors/index.ts";

// Standard alphabet with padding, nothing else: Buffer.from(text, "base64") would silently skip
// invalid characters and accept missing padding, so two different texts could decode alike.
const BASE64_PATTERN = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Number of bytes a padded standard base64 text decodes to, computed without decoding it. */
export function decodedLength(text: string): number {
  const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  return (text.length / 4) * 3 - padding;
}

/**
 * Decodes padded standard base64 strictly and returns a buffer the caller owns (and zeroes when
 * it contains a secret). Non-canonical text, whose unused trailing bits are not zero, is rejected too.
 * `maxBytes` is checked before decoding, so an oversized value is never copied.
 * The message never quotes the value, because it may be a secret.
 */
export function decodeBase64Strict(text: string, parameter: string, maxBytes?: number): Uint8Array {
  if (text.length % 4 !== 0 || !BASE64_PATTERN.test(text)) {
    throw invalidBase64(parameter);
  }
  const length = decodedLength(text);
  if (maxBytes !== undefined && length > maxBytes) {
    throw new ArborError(
      "PAYLOAD_TOO_LARGE",
      `${parameter} is ${length} bytes; the limit is ${maxBytes} bytes. Encrypt larger data locally with a data key`,
      { parameter, value: `${length} bytes` },
    );
  }

  const decoded = Buffer.from(text, "base64");
  if (decoded.toString("base64") !== text) {
    decoded.fill(0);
    throw invalidBase64(parameter);
  }
  const bytes = new Uint8Array(decoded);
  decoded.fill(0);
  return bytes;
}

export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

function invalidBase64(parameter: string): ArborError {
  return new ArborError(
    "INVALID_ARGUMENT",
    `invalid ${parameter}: expected standard base64 with padding`,
    { parameter },
  );
}
