import {
  aesGcmOpen,
  aesGcmSeal,
  encodeBase32,
  encodeLengthPrefixed,
  randomBytes,
} from "../crypto/index.ts";
import { decryptionFailed, invalidArgument } from "../errors/index.ts";
import { encodeContext, type EncryptionContext } from "./context.ts";
import { KEY_ID_BYTES, KEY_ID_PATTERN } from "./format.ts";
import { describe } from "./text-form.ts";

/**
 * Wrapped data key format 1, stored by users inside envelopes and on its own, so it never changes
 * incompatibly:
 *
 * | bytes | field |
 * |---|---|
 * | 1 | format version, 0x01 |
 * | 30 | service key id, ASCII (`key_` and 26 base32 characters) |
 * | 4 | service key version, big-endian |
 * | 16 | data key id, random |
 * | 60 | AES-256-GCM under the key version: 12-byte nonce, 32-byte data key, 16-byte tag |
 *
 * The AAD binds every field before the sealed part and the encryption context, so a wrapped data
 * key opens only with the key version, id and context it was made for.
 */
export const WRAPPED_DATA_KEY_VERSION = 1;
export const DATA_KEY_ID_BYTES = 16;
export const WRAPPED_DATA_KEY_BYTES = 1 + KEY_ID_BYTES + 4 + DATA_KEY_ID_BYTES + 12 + 32 + 16;
export const WRAPPED_DATA_KEY_PREFIX = "arbor:dk1:";

export interface WrappedDataKeyFields {
  keyId: string;
  keyVersion: number;
  /** `dk_` and 26 base32 characters: the credential id in audit events and issuance records. */
  dataKeyId: string;
  dataKeyIdBytes: Uint8Array;
  sealed: Uint8Array;
}

/** Seals a fresh 32-byte data key under a key version's material. */
export function wrapDataKey(input: {
  material: Uint8Array;
  keyId: string;
  keyVersion: number;
  dataKey: Uint8Array;
  context: EncryptionContext;
}): { wrapped: Uint8Array; dataKeyId: string } {
  const idBytes = randomBytes(DATA_KEY_ID_BYTES);
  const aad = dataKeyAad(input.keyId, input.keyVersion, idBytes, encodeContext(input.context));
  const sealed = aesGcmSeal(input.material, input.dataKey, aad);

  const out = new Uint8Array(WRAPPED_DATA_KEY_BYTES);
  const view = new DataView(out.buffer);
  out[0] = WRAPPED_DATA_KEY_VERSION;
  out.set(new TextEncoder().encode(input.keyId), 1);
  view.setUint32(1 + KEY_ID_BYTES, input.keyVersion, false);
  out.set(idBytes, 1 + KEY_ID_BYTES + 4);
  out.set(sealed, 1 + KEY_ID_BYTES + 4 + DATA_KEY_ID_BYTES);
  return { wrapped: out, dataKeyId: dataKeyIdOf(idBytes) };
}

/**
 * Reads the unauthenticated fields of a wrapped data key. Anything that is not format 1 of the
 * right length is DECRYPTION_FAILED, like every other failure to open it.
 */
export function parseWrappedDataKey(wrapped: Uint8Array): WrappedDataKeyFields {
  if (wrapped.length !== WRAPPED_DATA_KEY_BYTES || wrapped[0] !== WRAPPED_DATA_KEY_VERSION) {
    throw decryptionFailed();
  }
  const keyId = new TextDecoder().decode(wrapped.subarray(1, 1 + KEY_ID_BYTES));
  if (!KEY_ID_PATTERN.test(keyId)) throw decryptionFailed();

  const view = new DataView(wrapped.buffer, wrapped.byteOffset, wrapped.length);
  const keyVersion = view.getUint32(1 + KEY_ID_BYTES, false);
  if (keyVersion === 0) throw decryptionFailed();
  const dataKeyIdBytes = wrapped.slice(
    1 + KEY_ID_BYTES + 4,
    1 + KEY_ID_BYTES + 4 + DATA_KEY_ID_BYTES,
  );
  return {
    keyId,
    keyVersion,
    dataKeyIdBytes,
    dataKeyId: dataKeyIdOf(dataKeyIdBytes),
    sealed: wrapped.subarray(1 + KEY_ID_BYTES + 4 + DATA_KEY_ID_BYTES),
  };
}

/** Opens a parsed wrapped data key; a wrong key, context or any tampering is DECRYPTION_FAILED. */
export function unwrapDataKey(
  material: Uint8Array,
  fields: WrappedDataKeyFields,
  context: EncryptionContext,
): Uint8Array {
  const aad = dataKeyAad(
    fields.keyId,
    fields.keyVersion,
    fields.dataKeyIdBytes,
    encodeContext(context),
  );
  return aesGcmOpen(material, fields.sealed, aad);
}

export function wrappedDataKeyToText(wrapped: Uint8Array): string {
  return WRAPPED_DATA_KEY_PREFIX + Buffer.from(wrapped).toString("base64url");
}

/** Decodes `arbor:dk1:<base64url>`; malformed text is INVALID_ARGUMENT on `wrappedDataKey`. */
export function wrappedDataKeyFromText(text: string): Uint8Array {
  const body =
    typeof text === "string" && text.startsWith(WRAPPED_DATA_KEY_PREFIX)
      ? text.slice(WRAPPED_DATA_KEY_PREFIX.length)
      : null;
  if (body === null || !/^[A-Za-z0-9_-]+$/.test(body)) {
    throw invalidArgument(
      "wrappedDataKey",
      describe(text),
      `expected ${WRAPPED_DATA_KEY_PREFIX} followed by unpadded base64url`,
    );
  }
  const bytes = Buffer.from(body, "base64url");
  if (bytes.toString("base64url") !== body) {
    throw invalidArgument(
      "wrappedDataKey",
      describe(text),
      "the base64url text is not in canonical form",
    );
  }
  return new Uint8Array(bytes);
}

function dataKeyAad(
  keyId: string,
  keyVersion: number,
  idBytes: Uint8Array,
  encodedContext: Uint8Array,
): Uint8Array {
  return encodeLengthPrefixed("arbor/data-key/v1", keyId, keyVersion, idBytes, encodedContext);
}

function dataKeyIdOf(idBytes: Uint8Array): string {
  return `dk_${encodeBase32(idBytes)}`;
}
