import { aesGcmOpen, hkdfSha256, zeroize } from "../crypto/index.ts";
import { ArborError, isArborError } from "../errors/index.ts";
import type { KeyRow } from "../storage/repositories/keys.ts";
import type { KeyVersionRow } from "../storage/repositories/key-versions.ts";
import { deriveInfo, rootWrapAad, wrapAad } from "./binding.ts";
import type { KeyTreeDeps } from "./types.ts";

/** States in which a version's material may be used as a parent to open its children. */
const USABLE_AS_PARENT = new Set(["pending", "primary", "active"]);

/**
 * Resolves the plaintext material of a key version by walking its chain up to the root, using
 * the cache for every level it can. Returned buffers are copies owned by the caller, who must
 * zero them.
 */
export function createMaterialResolver(
  deps: Pick<KeyTreeDeps, "storage" | "root" | "cache" | "logger">,
) {
  const { storage, root, cache, logger } = deps;

  async function materialOf(key: KeyRow, version: KeyVersionRow): Promise<Uint8Array> {
    const cached = cache.copy(key.id, version.version);
    if (cached !== undefined) return cached;

    const material = await open(key, version);
    cache.put(key.id, version.version, Uint8Array.from(material));
    return material;
  }

  async function open(key: KeyRow, version: KeyVersionRow): Promise<Uint8Array> {
    if (version.parent_key_id === null) {
      return openWithRoot(key, version);
    }

    const parentKey = await storage.keys.findById(version.parent_key_id);
    const parentVersion = await storage.versions.find(
      version.parent_key_id,
      version.parent_version,
    );
    if (parentKey === undefined || parentVersion === undefined) {
      throw corrupt(key, version, "its parent version is missing");
    }
    if (!USABLE_AS_PARENT.has(parentVersion.state)) {
      throw new ArborError(
        "KEY_STATE_CONFLICT",
        `key ${key.path} version ${version.version} cannot be used: its parent ${parentKey.path} version ${parentVersion.version} is ${parentVersion.state}`,
        { parameter: "key", value: key.path },
      );
    }

    const parentMaterial = await materialOf(parentKey, parentVersion);
    try {
      return key.mode === "derived"
        ? derive(key, version, parentMaterial)
        : unwrapWithParent(key, version, parentMaterial);
    } finally {
      zeroize(parentMaterial);
    }
  }

  async function openWithRoot(key: KeyRow, version: KeyVersionRow): Promise<Uint8Array> {
    if (version.material === null) throw corrupt(key, version, "it has no wrapped material");

    try {
      return await root.unwrap(
        { rootVersion: version.parent_version, ciphertext: new Uint8Array(version.material) },
        rootWrapAad({ keyId: key.id, version: version.version, purpose: key.purpose }),
      );
    } catch (error) {
      // SEALED and ROOT_UNAVAILABLE pass through: they are not corruption.
      if (
        isArborError(error) &&
        error.code !== "STORED_KEY_CORRUPT" &&
        error.code !== "DECRYPTION_FAILED"
      ) {
        throw error;
      }
      throw corrupt(key, version, "the root could not unwrap it", error);
    }
  }

  function unwrapWithParent(
    key: KeyRow,
    version: KeyVersionRow,
    parentMaterial: Uint8Array,
  ): Uint8Array {
    if (version.material === null) throw corrupt(key, version, "it has no wrapped material");

    try {
      return aesGcmOpen(
        parentMaterial,
        new Uint8Array(version.material),
        wrapAad({
          keyId: key.id,
          version: version.version,
          parentKeyId: version.parent_key_id!,
          parentVersion: version.parent_version,
          purpose: key.purpose,
        }),
      );
    } catch (error) {
      throw corrupt(key, version, "its parent version could not unwrap it", error);
    }
  }

  function derive(key: KeyRow, version: KeyVersionRow, parentMaterial: Uint8Array): Uint8Array {
    if (version.salt === null) throw corrupt(key, version, "it has no derivation salt");

    return hkdfSha256(
      parentMaterial,
      new Uint8Array(version.salt),
      deriveInfo({
        keyId: key.id,
        purpose: key.purpose,
        algorithm: key.algorithm,
        version: version.version,
      }),
      32,
    );
  }

  /**
   * A stored blob that fails to open is server-side corruption or a root fault, never the
   * caller's mistake: it is logged with the version and answered with 500.
   */
  function corrupt(
    key: KeyRow,
    version: KeyVersionRow,
    reason: string,
    cause?: unknown,
  ): ArborError {
    logger.error(
      { keyId: key.id, path: key.path, version: version.version, reason },
      "stored key version failed to open",
    );
    return new ArborError(
      "STORED_KEY_CORRUPT",
      `stored key ${key.path} version ${version.version} could not be opened: ${reason}; check the database and the root of trust`,
      {},
      { cause },
    );
  }

  return { materialOf };
}

export type MaterialResolver = ReturnType<typeof createMaterialResolver>;
