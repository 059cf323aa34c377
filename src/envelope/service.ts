import { constantTimeEqual, randomBytes, zeroize } from "../crypto/index.ts";
import { decryptionFailed, isArborError } from "../errors/index.ts";
import {
  requirePurpose,
  type KeyScope,
  type KeyTree,
  type KeyVersionRef,
} from "../hierarchy/index.ts";
import { encodeContext, type EncryptionContext } from "./context.ts";
import {
  parseWrappedDataKey,
  unwrapDataKey,
  wrapDataKey,
  wrappedDataKeyFromText,
  wrappedDataKeyToText,
  type WrappedDataKeyFields,
} from "./data-key.ts";
import { decryptEnvelope } from "./decrypt.ts";
import { encryptEnvelope } from "./encrypt.ts";
import { fromTextForm, toTextForm } from "./text-form.ts";

/** Identity of the key version that produced a result, with its chain for the audit event. */
export interface KeyVersionResult {
  keyId: string;
  keyVersion: number;
  /** `key_id@version` from the root down to the service key version. */
  chain: string[];
}

export interface DataKeyResult extends KeyVersionResult {
  dataKeyId: string;
  /** The plaintext data key; the caller zeroes it once sent. */
  plaintext: Uint8Array;
  wrappedDataKey: string;
}

/**
 * Envelope encryption on top of the key tree: data keys wrapped by `encrypt` service keys, and
 * envelope format v1 for payloads the server encrypts itself. Every method takes the caller's
 * scope; a key outside it is KEY_NOT_FOUND. Decryption failures of any cause are the single
 * DECRYPTION_FAILED.
 */
export function createEnvelopeService(deps: { keyTree: KeyTree }) {
  const { keyTree } = deps;

  async function primaryInScope(keyRef: string, scope: KeyScope): Promise<KeyVersionRef> {
    return keyTree.primaryOf(await keyTree.resolveKey(keyRef, "encrypt", scope), "encrypt");
  }

  async function result(ref: KeyVersionRef): Promise<KeyVersionResult> {
    return {
      keyId: ref.key.id,
      keyVersion: ref.version.version,
      chain: await keyTree.chainOf(ref.key.id, ref.version.version),
    };
  }

  /** Makes a fresh data key and wraps it; the returned plaintext belongs to the caller. */
  async function newDataKey(ref: KeyVersionRef, context: EncryptionContext) {
    encodeContext(context);
    const dataKey = randomBytes(32);
    try {
      const { wrapped, dataKeyId } = await keyTree.withMaterial(ref, (material) =>
        wrapDataKey({
          material,
          keyId: ref.key.id,
          keyVersion: ref.version.version,
          dataKey,
          context,
        }),
      );
      return { dataKey, wrapped, dataKeyId };
    } catch (error) {
      zeroize(dataKey);
      throw error;
    }
  }

  /**
   * Opens a wrapped data key. The key named inside it must be an `encrypt` key in scope whose
   * version may decrypt (or, for rewrap, is revoked).
   */
  async function openDataKey(
    fields: WrappedDataKeyFields,
    context: EncryptionContext,
    scope: KeyScope,
    options: { allowRevoked?: boolean } = {},
  ): Promise<{ ref: KeyVersionRef; dataKey: Uint8Array }> {
    // The key id and version come from the ciphertext, so a key that does not exist, lies
    // outside the caller's scope or lacks that version is a failed decryption like any other.
    const ref = await asDecryptionFailure(async () => {
      const key = await keyTree.resolveKey(fields.keyId, undefined, scope);
      requirePurpose(key, "encrypt");
      return keyTree.versionForDecrypt(key, fields.keyVersion, options);
    });
    const dataKey = await keyTree.withMaterial(ref, (material) =>
      unwrapDataKey(material, fields, context),
    );
    return { ref, dataKey };
  }

  async function generateDataKey(
    keyRef: string,
    context: EncryptionContext,
    scope: KeyScope,
  ): Promise<DataKeyResult> {
    const ref = await primaryInScope(keyRef, scope);
    const { dataKey, wrapped, dataKeyId } = await newDataKey(ref, context);
    return {
      ...(await result(ref)),
      dataKeyId,
      plaintext: dataKey,
      wrappedDataKey: wrappedDataKeyToText(wrapped),
    };
  }

  async function decryptDataKey(wrappedText: string, context: EncryptionContext, scope: KeyScope) {
    const fields = parseWrappedDataKey(wrappedDataKeyFromText(wrappedText));
    const { ref, dataKey } = await openDataKey(fields, context, scope);
    return { ...(await result(ref)), dataKeyId: fields.dataKeyId, plaintext: dataKey };
  }

  /** Re-wraps a data key under the key's primary version; the plaintext never leaves this call. */
  async function rewrapDataKey(wrappedText: string, context: EncryptionContext, scope: KeyScope) {
    const fields = parseWrappedDataKey(wrappedDataKeyFromText(wrappedText));
    const { ref, dataKey } = await openDataKey(fields, context, scope, { allowRevoked: true });
    try {
      const primary = await keyTree.primaryOf(ref.key, "encrypt");
      const { wrapped } = await keyTree.withMaterial(primary, (material) =>
        wrapDataKey({
          material,
          keyId: primary.key.id,
          keyVersion: primary.version.version,
          dataKey,
          context,
        }),
      );
      return {
        ...(await result(primary)),
        dataKeyId: fields.dataKeyId,
        wrappedDataKey: wrappedDataKeyToText(wrapped),
      };
    } finally {
      zeroize(dataKey);
    }
  }

  async function encryptWith(
    ref: KeyVersionRef,
    plaintext: Uint8Array,
    context: EncryptionContext,
  ) {
    const { dataKey, wrapped, dataKeyId } = await newDataKey(ref, context);
    try {
      const envelope = encryptEnvelope(
        {
          dataKey,
          keyId: ref.key.id,
          keyVersion: ref.version.version,
          wrappedDataKey: wrapped,
          context,
        },
        plaintext,
      );
      return { ...(await result(ref)), dataKeyId, ciphertext: toTextForm(envelope) };
    } finally {
      zeroize(dataKey);
    }
  }

  async function encrypt(
    keyRef: string,
    plaintext: Uint8Array,
    context: EncryptionContext,
    scope: KeyScope,
  ) {
    return encryptWith(await primaryInScope(keyRef, scope), plaintext, context);
  }

  async function openEnvelope(
    ciphertext: string,
    expectedContext: EncryptionContext | undefined,
    scope: KeyScope,
    options: { allowRevoked?: boolean } = {},
  ) {
    if (expectedContext !== undefined) encodeContext(expectedContext);
    const bytes = fromTextForm(ciphertext);
    let ref: KeyVersionRef | undefined;
    let dataKeyId = "";
    const { plaintext, header } = await decryptEnvelope(bytes, async (header) => {
      const fields = parseWrappedDataKey(header.wrappedDataKey);
      // The header names the key twice (its own fields and inside the wrapped key): they must agree.
      if (fields.keyId !== header.keyId || fields.keyVersion !== header.keyVersion)
        throw decryptionFailed();
      const opened = await openDataKey(fields, header.context, scope, options);
      ref = opened.ref;
      dataKeyId = fields.dataKeyId;
      return opened.dataKey;
    });
    if (expectedContext !== undefined && !sameContext(expectedContext, header.context)) {
      zeroize(plaintext);
      throw decryptionFailed();
    }
    return { plaintext, context: header.context, ref: ref!, dataKeyId };
  }

  async function decrypt(
    ciphertext: string,
    expectedContext: EncryptionContext | undefined,
    scope: KeyScope,
  ) {
    const opened = await openEnvelope(ciphertext, expectedContext, scope);
    return {
      ...(await result(opened.ref)),
      dataKeyId: opened.dataKeyId,
      plaintext: opened.plaintext,
      context: opened.context,
    };
  }

  /** Decrypts and re-encrypts under the primary version inside the server. */
  async function rewrap(
    ciphertext: string,
    expectedContext: EncryptionContext | undefined,
    scope: KeyScope,
  ) {
    const opened = await openEnvelope(ciphertext, expectedContext, scope, { allowRevoked: true });
    try {
      const primary = await keyTree.primaryOf(opened.ref.key, "encrypt");
      return await encryptWith(primary, opened.plaintext, opened.context);
    } finally {
      zeroize(opened.plaintext);
    }
  }

  return { generateDataKey, decryptDataKey, rewrapDataKey, encrypt, decrypt, rewrap };
}

export type EnvelopeService = ReturnType<typeof createEnvelopeService>;

/** Runs `work`, turning "no such key or version" into the uniform DECRYPTION_FAILED. */
async function asDecryptionFailure<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (isArborError(error) && NOT_FOUND_CODES.has(error.code)) throw decryptionFailed(error);
    throw error;
  }
}

const NOT_FOUND_CODES: ReadonlySet<string> = new Set([
  "KEY_NOT_FOUND",
  "KEY_VERSION_NOT_FOUND",
  "PURPOSE_MISMATCH",
]);

/** Compares two valid contexts by their canonical encodings, so key order does not matter. */
function sameContext(a: EncryptionContext, b: EncryptionContext): boolean {
  return constantTimeEqual(encodeContext(a), encodeContext(b));
}
