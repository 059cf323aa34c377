import type { JsonWebKey } from "node:crypto";

import { randomBytes } from "../../crypto/index.ts";
import { ArborError } from "../../errors/index.ts";
import { pkcs11js, type Pkcs11Handle } from "./calls.ts";
import type { SessionContext } from "./module.ts";
import {
  CKM_EC_EDWARDS_KEY_PAIR_GEN,
  checkpointKeyTemplates,
  ed25519JwkFromEcPoint,
  keyPairSearch,
  readSecretKeyAttributes,
  rootKeyProblems,
  rootKeyTemplate,
  secretKeyAttributeQuery,
  secretKeySearch,
  type SecretKeyAttributes,
} from "./templates.ts";
import type { Pkcs11RootRecord, Pkcs11RootVersionRecord } from "./types.ts";

/**
 * Operations on the provider's token objects. Each runs inside `Pkcs11Token.run` on a session of
 * its own, and names its objects by CKA_LABEL and CKA_ID, never by handle, because handles change
 * whenever the library is re-initialized.
 */

const OBJECT_ID_BYTES = 16;
const LABEL_SUFFIX_BYTES = 8;

/** The token object of a root key version: its version, CKA_LABEL and CKA_ID. */
export type RootKeyRef = Pick<Pkcs11RootVersionRecord, "version" | "keyLabel" | "keyId">;
export type CheckpointKeyRef = Pick<Pkcs11RootRecord, "checkpointKeyLabel" | "checkpointKeyId">;

/** Description of a root key for messages and handle caching; contains no secret. */
export function describeRootKey(key: RootKeyRef): string {
  return `root key version ${key.version} (CKA_LABEL ${key.keyLabel})`;
}

export function findRootKey(context: SessionContext, key: RootKeyRef): Pkcs11Handle {
  return context.find(secretKeySearch(key.keyLabel, key.keyId), describeRootKey(key));
}

export function findCheckpointPrivateKey(
  context: SessionContext,
  key: CheckpointKeyRef,
): Pkcs11Handle {
  return context.find(
    keyPairSearch("private", key.checkpointKeyLabel, key.checkpointKeyId),
    `checkpoint private key (CKA_LABEL ${key.checkpointKeyLabel})`,
  );
}

/** Returns a fresh random label such as `arbor-root-v2-1f0c9a4b7d3e5a61`, so labels never collide. */
export function newObjectLabel(prefix: string): string {
  return `${prefix}-${Buffer.from(randomBytes(LABEL_SUFFIX_BYTES)).toString("hex")}`;
}

export function newObjectId(): Uint8Array {
  return randomBytes(OBJECT_ID_BYTES);
}

export function readRootKeyAttributes(
  context: SessionContext,
  handle: Pkcs11Handle,
): SecretKeyAttributes {
  return readSecretKeyAttributes(
    context.calls.C_GetAttributeValue(context.session, handle, secretKeyAttributeQuery()),
  );
}

/**
 * Generates a root key version on the token and checks what the token made of the template,
 * because a module may ignore attributes it does not support. Returns the handle, so a caller
 * whose store write fails can destroy a key that never wrapped anything.
 */
export function generateRootKey(context: SessionContext, key: RootKeyRef): Pkcs11Handle {
  const p = pkcs11js();
  const handle = context.calls.C_GenerateKey(
    context.session,
    { mechanism: p.CKM_AES_KEY_GEN },
    rootKeyTemplate(key.keyLabel, key.keyId),
  );
  const problems = rootKeyProblems(readRootKeyAttributes(context, handle));
  if (problems.length > 0) {
    destroyQuietly(context, handle);
    throw new ArborError(
      "ROOT_UNAVAILABLE",
      `the token created ${describeRootKey(key)} with other attributes than requested: ${problems.join("; ")}. The key was destroyed; this module cannot hold an Arbor root key`,
    );
  }
  return handle;
}

/**
 * Finds the one secret key labelled `label` and checks that it may serve as the root key.
 * Returns its CKA_ID (possibly empty). Throws INVALID_ARGUMENT when it is missing, ambiguous or
 * unfit, naming every problem so the operator can fix the key or generate one instead.
 */
export function adoptRootKey(
  context: SessionContext,
  label: string,
  tokenLabel: string,
): { keyId: Uint8Array; neverExtractable: boolean } {
  const found = context.findAll(secretKeySearch(label, null), 2);
  if (found.length === 0) {
    throw new ArborError(
      "INVALID_ARGUMENT",
      `no secret key labelled ${label} exists on PKCS#11 token ${tokenLabel}: check the key label, or omit it to generate a new root key`,
      { parameter: "key_label", value: label },
    );
  }
  if (found.length > 1) {
    throw new ArborError(
      "INVALID_ARGUMENT",
      `several secret keys are labelled ${label} on PKCS#11 token ${tokenLabel}: give the root key a unique label`,
      { parameter: "key_label", value: label },
    );
  }

  const attributes = readRootKeyAttributes(context, found[0]!);
  const problems = rootKeyProblems(attributes);
  if (problems.length > 0) {
    throw new ArborError(
      "INVALID_ARGUMENT",
      `the key labelled ${label} cannot be the root key: ${problems.join("; ")}. Generate a key that is AES-256, sensitive, not extractable and limited to encrypt and decrypt`,
      { parameter: "key_label", value: label },
    );
  }
  return { keyId: attributes.id, neverExtractable: attributes.neverExtractable };
}

/**
 * Checks at unseal that a root key is on the token and still fit to be one. Throws
 * ROOT_UNAVAILABLE otherwise, naming the key.
 */
export function verifyRootKey(context: SessionContext, key: RootKeyRef, tokenLabel: string): void {
  const problems = rootKeyProblems(readRootKeyAttributes(context, findRootKey(context, key)));
  if (problems.length > 0) {
    throw new ArborError(
      "ROOT_UNAVAILABLE",
      `${describeRootKey(key)} on PKCS#11 token ${tokenLabel} is not usable as a root key: ${problems.join("; ")}`,
    );
  }
}

/** Generates the Ed25519 checkpoint key pair and returns its public key as a JWK. */
export function generateCheckpointKey(
  context: SessionContext,
  key: CheckpointKeyRef,
): { jwk: JsonWebKey; handles: Pkcs11Handle[] } {
  const { publicTemplate, privateTemplate } = checkpointKeyTemplates(
    key.checkpointKeyLabel,
    key.checkpointKeyId,
  );
  const pair = context.calls.C_GenerateKeyPair(
    context.session,
    { mechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN },
    publicTemplate,
    privateTemplate,
  );
  const handles = [pair.publicKey, pair.privateKey];
  try {
    return { jwk: publicJwkOf(context, pair.publicKey), handles };
  } catch (error) {
    for (const handle of handles) destroyQuietly(context, handle);
    throw error;
  }
}

/** Reads the checkpoint public key from the token, as a JWK. */
export function readCheckpointPublicKey(
  context: SessionContext,
  key: CheckpointKeyRef,
): JsonWebKey {
  const handle = context.find(
    keyPairSearch("public", key.checkpointKeyLabel, key.checkpointKeyId),
    `checkpoint public key (CKA_LABEL ${key.checkpointKeyLabel})`,
  );
  return publicJwkOf(context, handle);
}

function publicJwkOf(context: SessionContext, handle: Pkcs11Handle): JsonWebKey {
  const [point] = context.calls.C_GetAttributeValue(context.session, handle, [
    { type: pkcs11js().CKA_EC_POINT },
  ]);
  if (point === undefined) throw new Error("the token returned no CKA_EC_POINT");
  return ed25519JwkFromEcPoint(point.value);
}

/** Sets CKA_ENCRYPT and CKA_DECRYPT false; the key stays on the token. */
export function disableRootKey(context: SessionContext, key: RootKeyRef): void {
  const p = pkcs11js();
  context.calls.C_SetAttributeValue(context.session, findRootKey(context, key), [
    { type: p.CKA_ENCRYPT, value: false },
    { type: p.CKA_DECRYPT, value: false },
  ]);
}

/**
 * Destroys an object that this provider just created and never used, after the step that should
 * have recorded it failed. Used keys are never destroyed.
 */
export function destroyQuietly(context: SessionContext, handle: Pkcs11Handle): void {
  try {
    context.calls.C_DestroyObject(context.session, handle);
  } catch {
    // The object stays as an unused orphan with a random label; it protects nothing.
  }
}
