import { ArborError } from "../errors/index.ts";
import { UNSEAL_KEY_BYTES } from "./sealed-format.ts";

/**
 * Length of one unseal share as `shamir-secret-sharing` 0.0.4 produces it: one byte per byte of
 * the unseal key, then the share's x coordinate (1 to 255) in the last byte.
 */
export const UNSEAL_SHARE_BYTES = UNSEAL_KEY_BYTES + 1;

const BASE64_PATTERN = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Encodes a share the way `initialize` hands it to a share holder (standard base64, padded). */
export function encodeUnsealShare(share: Uint8Array): string {
  return Buffer.from(share.buffer, share.byteOffset, share.length).toString("base64");
}

/**
 * Decodes a share as `initialize` returned it. Surrounding whitespace is ignored because shares
 * are often pasted. Throws INVALID_SHARE for anything that is not padded standard base64; the
 * length and x coordinate are checked when the share is submitted. The caller zeroes the result
 * after submitting it.
 */
export function decodeUnsealShare(text: string): Uint8Array {
  const trimmed = text.trim();
  if (trimmed.length === 0 || !BASE64_PATTERN.test(trimmed)) {
    throw new ArborError(
      "INVALID_SHARE",
      "invalid share: expected the standard base64 text that initialization returned",
      { parameter: "share" },
    );
  }
  const decoded = Buffer.from(trimmed, "base64");
  return new Uint8Array(decoded.buffer, decoded.byteOffset, decoded.length);
}

/** Returns the share's x coordinate (its last byte). Call only on a share of the right length. */
export function shareXCoordinate(share: Uint8Array): number {
  return share[share.length - 1] ?? 0;
}

/**
 * Throws INVALID_SHARE unless the share can take part in combining: the right length, an x
 * coordinate other than 0 (x = 0 would be the secret itself), and an x coordinate not already
 * submitted. Combining would otherwise fail or silently return a wrong secret. The messages name
 * only lengths and x coordinates, which are not secret.
 */
export function validateShare(share: Uint8Array, submittedX: ReadonlySet<number>): void {
  if (share.length !== UNSEAL_SHARE_BYTES) {
    throw new ArborError(
      "INVALID_SHARE",
      `invalid share: expected ${UNSEAL_SHARE_BYTES} bytes, got ${share.length}; submit the share exactly as it was issued`,
      { parameter: "share", value: `${share.length} bytes` },
    );
  }

  const x = shareXCoordinate(share);
  if (x === 0) {
    throw new ArborError(
      "INVALID_SHARE",
      "invalid share: its x coordinate is 0, which no issued share has; submit the share exactly as it was issued",
      { parameter: "share", value: "x=0" },
    );
  }
  if (submittedX.has(x)) {
    throw new ArborError(
      "INVALID_SHARE",
      `invalid share: a share with x coordinate ${x} was already submitted to this ceremony; each holder submits a different share`,
      { parameter: "share", value: `x=${x}` },
    );
  }
}
