import { ArborError, invalidArgument, quote } from "../errors/index.ts";
import { type EncryptionContext, encodeContext } from "./context.ts";
import {
  DATA_KEY_BYTES,
  DEFAULT_FRAME_SIZE,
  KEY_ID_PATTERN,
  MAX_FRAME_SIZE,
  MAX_KEY_VERSION,
  MAX_WRAPPED_DATA_KEY_BYTES,
  MIN_FRAME_SIZE,
  MIN_KEY_VERSION,
} from "./format.ts";

/**
 * Inputs of one envelope encryption. There is deliberately no nonce or IV: frame nonces are
 * derived inside, and passing a `nonce` or `iv` field is rejected with UNSUPPORTED_FIELD.
 */
export interface EnvelopeEncryptParams {
  /**
   * The 32-byte plaintext data key. The caller owns it: the envelope code copies what it needs,
   * never modifies it, and the caller zeroes it once the encrypt call (or stream creation)
   * has returned.
   */
  readonly dataKey: Uint8Array;
  /** Opaque id of the service key that wrapped the data key (`key_` and 26 base32 characters). */
  readonly keyId: string;
  /** Version of that service key, 1 to 2^32 - 1. */
  readonly keyVersion: number;
  /** The data key as wrapped by that key version, 1 to 4096 bytes, stored as given. */
  readonly wrappedDataKey: Uint8Array;
  /** Bound to the ciphertext and returned on decrypt; not secret. Defaults to an empty context. */
  readonly context?: EncryptionContext;
  /** Plaintext bytes per frame, 16 to 1048576. Defaults to 65536. */
  readonly frameSize?: number;
}

/** Encrypt parameters after validation, with the context already in its canonical encoding. */
export interface ValidatedEncryptParams {
  dataKey: Uint8Array;
  keyId: string;
  keyVersion: number;
  wrappedDataKey: Uint8Array;
  encodedContext: Uint8Array;
  frameSize: number;
}

const ACCEPTED_FIELDS: ReadonlySet<string> = new Set([
  "dataKey",
  "keyId",
  "keyVersion",
  "wrappedDataKey",
  "context",
  "frameSize",
]);
const NONCE_FIELDS: ReadonlySet<string> = new Set(["nonce", "iv"]);

/**
 * Validates encrypt parameters at runtime, because JavaScript callers and decoded JSON bypass
 * the type. Unknown fields are rejected first, so a caller who passes a nonce learns that it is
 * not used instead of believing it was. Throws UNSUPPORTED_FIELD or INVALID_ARGUMENT.
 */
export function validateEncryptParams(params: unknown): ValidatedEncryptParams {
  if (typeof params !== "object" || params === null || Array.isArray(params)) {
    throw invalidArgument("params", typeof params, "encrypt parameters must be an object");
  }
  for (const field of Object.keys(params)) {
    if (!ACCEPTED_FIELDS.has(field)) throw unsupportedField(field);
  }

  const { dataKey, keyId, keyVersion, wrappedDataKey, context, frameSize } = params as Partial<
    Record<keyof EnvelopeEncryptParams, unknown>
  >;
  return {
    dataKey: validateDataKey(dataKey),
    keyId: validateKeyId(keyId),
    keyVersion: validateKeyVersion(keyVersion),
    wrappedDataKey: validateWrappedDataKey(wrappedDataKey),
    encodedContext: encodeContext(context),
    frameSize: validateFrameSize(frameSize),
  };
}

function unsupportedField(field: string): ArborError {
  const reason = NONCE_FIELDS.has(field)
    ? "envelope nonces are derived from a per-message key and the frame index and cannot be supplied"
    : `accepted fields are ${[...ACCEPTED_FIELDS].join(", ")}`;
  // The value is never quoted: a misplaced field may contain key material.
  return new ArborError("UNSUPPORTED_FIELD", `unsupported field ${quote(field)}: ${reason}`, {
    parameter: field,
  });
}

function validateDataKey(dataKey: unknown): Uint8Array {
  if (!(dataKey instanceof Uint8Array) || dataKey.length !== DATA_KEY_BYTES) {
    const described = dataKey instanceof Uint8Array ? `${dataKey.length} bytes` : typeof dataKey;
    throw invalidArgument("dataKey", described, "a data key must be a Uint8Array of 32 bytes");
  }
  // An all-zero key is almost certainly a buffer that was zeroed after an earlier use.
  if (dataKey.every((byte) => byte === 0)) {
    throw invalidArgument(
      "dataKey",
      "32 zero bytes",
      "the data key is all zeros, which usually means its buffer was already zeroed; pass a live key",
    );
  }
  return dataKey;
}

function validateKeyId(keyId: unknown): string {
  if (typeof keyId !== "string" || !KEY_ID_PATTERN.test(keyId)) {
    throw invalidArgument("keyId", keyId, "expected key_ followed by 26 base32 characters");
  }
  return keyId;
}

function validateKeyVersion(keyVersion: unknown): number {
  if (
    typeof keyVersion !== "number" ||
    !Number.isInteger(keyVersion) ||
    keyVersion < MIN_KEY_VERSION ||
    keyVersion > MAX_KEY_VERSION
  ) {
    throw invalidArgument(
      "keyVersion",
      keyVersion,
      `expected an integer from 1 to ${MAX_KEY_VERSION}`,
    );
  }
  return keyVersion;
}

function validateWrappedDataKey(wrappedDataKey: unknown): Uint8Array {
  if (
    !(wrappedDataKey instanceof Uint8Array) ||
    wrappedDataKey.length === 0 ||
    wrappedDataKey.length > MAX_WRAPPED_DATA_KEY_BYTES
  ) {
    const described =
      wrappedDataKey instanceof Uint8Array
        ? `${wrappedDataKey.length} bytes`
        : typeof wrappedDataKey;
    throw invalidArgument(
      "wrappedDataKey",
      described,
      `a wrapped data key must be a Uint8Array of 1 to ${MAX_WRAPPED_DATA_KEY_BYTES} bytes`,
    );
  }
  return wrappedDataKey;
}

function validateFrameSize(frameSize: unknown): number {
  if (frameSize === undefined) return DEFAULT_FRAME_SIZE;
  if (
    typeof frameSize !== "number" ||
    !Number.isInteger(frameSize) ||
    frameSize < MIN_FRAME_SIZE ||
    frameSize > MAX_FRAME_SIZE
  ) {
    throw invalidArgument(
      "frameSize",
      frameSize,
      `expected an integer number of bytes from ${MIN_FRAME_SIZE} to ${MAX_FRAME_SIZE}`,
    );
  }
  return frameSize;
}
