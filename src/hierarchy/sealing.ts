import { aesGcmSeal, generateSigningKey, randomBytes, zeroize } from "../crypto/index.ts";
import { ArborError } from "../errors/index.ts";
import type { KeyRow } from "../storage/repositories/keys.ts";
import type { KeyVersionRow } from "../storage/repositories/key-versions.ts";
import type { KeyAlgorithm, KeyMode, KeyPurpose } from "../storage/schema.ts";
import { rootWrapAad, wrapAad } from "./binding.ts";
import type { MaterialResolver } from "./material.ts";
import type { KeyTreeDeps } from "./types.ts";

/** The identity fields a new version is bound to. */
export interface VersionTarget {
  keyId: string;
  version: number;
  purpose: KeyPurpose;
  algorithm: KeyAlgorithm;
  mode: KeyMode;
}

/** A parent key with the version that will wrap or derive the new version. */
export interface ParentVersion {
  key: KeyRow;
  version: KeyVersionRow;
}

/** Columns of a new key_versions row that come from generating and sealing its material. */
export interface SealedVersion {
  material: Uint8Array | null;
  salt: Uint8Array | null;
  publicJwk: string | null;
  parentKeyId: string | null;
  parentVersion: number;
}

/**
 * Generates fresh material for a version and seals it under its parent (or the root when there is
 * no parent). Runs outside any transaction: it may call the root and it generates keys. Plaintext
 * material and parent material are zeroed before returning.
 */
export function createVersionSealer(deps: Pick<KeyTreeDeps, "root">, resolver: MaterialResolver) {
  async function seal(target: VersionTarget, parent: ParentVersion | null): Promise<SealedVersion> {
    if (target.mode === "derived") {
      if (parent === null) throw new Error("a derived key needs a parent version");
      // Derived material is never stored: the salt and the parent version reproduce it.
      return {
        material: null,
        salt: randomBytes(32),
        publicJwk: null,
        parentKeyId: parent.key.id,
        parentVersion: parent.version.version,
      };
    }

    const { plaintext, publicJwk } = generateMaterial(target.purpose, target.algorithm);
    try {
      if (parent === null) {
        const blob = await deps.root.wrap(
          plaintext,
          rootWrapAad({ keyId: target.keyId, version: target.version, purpose: target.purpose }),
        );
        return {
          material: blob.ciphertext,
          salt: null,
          publicJwk,
          parentKeyId: null,
          parentVersion: blob.rootVersion,
        };
      }

      const parentMaterial = await resolver.materialOf(parent.key, parent.version);
      try {
        const material = aesGcmSeal(
          parentMaterial,
          plaintext,
          wrapAad({
            keyId: target.keyId,
            version: target.version,
            parentKeyId: parent.key.id,
            parentVersion: parent.version.version,
            purpose: target.purpose,
          }),
        );
        return {
          material,
          salt: null,
          publicJwk,
          parentKeyId: parent.key.id,
          parentVersion: parent.version.version,
        };
      } finally {
        zeroize(parentMaterial);
      }
    } finally {
      zeroize(plaintext);
    }
  }

  return { seal };
}

function generateMaterial(
  purpose: KeyPurpose,
  algorithm: KeyAlgorithm,
): { plaintext: Uint8Array; publicJwk: string | null } {
  if (purpose !== "sign") return { plaintext: randomBytes(32), publicJwk: null };
  if (algorithm !== "EdDSA" && algorithm !== "ES256") {
    throw new ArborError("INTERNAL", `sign keys cannot use algorithm ${algorithm}`);
  }

  const generated = generateSigningKey(algorithm);
  return { plaintext: generated.privateKeyPkcs8, publicJwk: JSON.stringify(generated.publicJwk) };
}
