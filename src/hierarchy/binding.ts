import { encodeLengthPrefixed } from "../crypto/index.ts";

/**
 * AAD of a key version wrapped by its parent key version. Binding every field means a blob copied
 * to another key, version, parent or purpose fails to open instead of yielding a key.
 */
export function wrapAad(input: {
  keyId: string;
  version: number;
  parentKeyId: string;
  parentVersion: number;
  purpose: string;
}): Uint8Array {
  return encodeLengthPrefixed(
    "arbor/key-wrap/v1",
    input.keyId,
    input.version,
    input.parentKeyId,
    input.parentVersion,
    input.purpose,
  );
}

/**
 * AAD of an environment master version wrapped by the root. The root provider binds its own
 * version number around this AAD, because only the provider decides which root version wraps.
 */
export function rootWrapAad(input: {
  keyId: string;
  version: number;
  purpose: string;
}): Uint8Array {
  return encodeLengthPrefixed("arbor/root-child/v1", input.keyId, input.version, input.purpose);
}

/** HKDF info of a derived key version: the key's identity and the version it becomes. */
export function deriveInfo(input: {
  keyId: string;
  purpose: string;
  algorithm: string;
  version: number;
}): Uint8Array {
  return encodeLengthPrefixed(
    "arbor/key-derive/v1",
    input.keyId,
    input.purpose,
    input.algorithm,
    input.version,
  );
}
