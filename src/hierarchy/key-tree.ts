import type { Transaction } from "kysely";

import { newOpaqueId, OPAQUE_ID_PATTERN, zeroize } from "../crypto/index.ts";
import { ArborError, invalidArgument, quote } from "../errors/index.ts";
import { constraintViolation } from "../storage/errors.ts";
import type { KeyRow } from "../storage/repositories/keys.ts";
import type { KeyVersionRow } from "../storage/repositories/key-versions.ts";
import type { Database, KeyAlgorithm, KeyPurpose } from "../storage/schema.ts";
import type { KeyFilter } from "../storage/repositories/keys.ts";
import { createMaterialResolver } from "./material.ts";
import {
  formatKeyPath,
  parentPathOf,
  parseKeyPath,
  type KeyPath,
  type ServicePurpose,
} from "./paths.ts";
import { createVersionSealer, type ParentVersion } from "./sealing.ts";
import type { CreateKeyOptions, KeyChange, KeyInfo, KeyTreeDeps, TreeNode } from "./types.ts";
import { buildTree, ROOT_PARENT_ID, toKeyInfo } from "./views.ts";
import { createVersionLifecycle } from "./lifecycle.ts";

/** A resolved key with one of its versions, as the envelope and token services use them. */
export interface KeyVersionRef {
  key: KeyRow;
  version: KeyVersionRow;
}

/**
 * The key tree: masters per environment and tenant, service keys below them, their versions and
 * states, and access to their material. Every change is one transaction that also writes the
 * outbox and reports the change to `onChange` (the audit writer).
 */
export function createKeyTree(deps: KeyTreeDeps) {
  const { storage, clock, cache } = deps;
  const resolver = createMaterialResolver(deps);
  const sealer = createVersionSealer(deps, resolver);

  async function recordChange(trx: Transaction<Database>, change: KeyChange): Promise<void> {
    await storage.outbox.append(change.type, { ...change }, change.at, trx);
    await deps.onChange?.(trx, change);
  }

  const lifecycle = createVersionLifecycle({
    ...deps,
    sealer,
    recordChange,
    parentVersionFor,
    resolveKey,
  });

  /**
   * Finds a key by opaque id or by path. With a scope, a key outside it is "not found", exactly
   * like a key that does not exist, so a caller learns nothing about other scopes.
   */
  async function resolveKey(
    reference: string,
    impliedPurpose?: ServicePurpose,
    scope?: KeyScope,
  ): Promise<KeyRow> {
    let key: KeyRow | undefined;
    if (OPAQUE_ID_PATTERN.test(reference) && reference.startsWith("key_")) {
      key = await storage.keys.findById(reference);
    } else {
      key = await storage.keys.findByPath(formatKeyPath(parseKeyPath(reference, impliedPurpose)));
    }
    if (key === undefined || (scope !== undefined && !isInScope(key, scope)))
      throw keyNotFound(reference);
    return key;
  }

  /** The primary version of the parent key, which wraps or derives every new child version. */
  async function parentVersionFor(parentId: string | null): Promise<ParentVersion | null> {
    if (parentId === null) return null;

    const parent = await storage.keys.findById(parentId);
    if (parent === undefined) throw new ArborError("INTERNAL", `parent key ${parentId} is missing`);
    const primary = await storage.versions.primary(parent.id);
    if (primary === undefined) {
      throw new ArborError(
        "KEY_STATE_CONFLICT",
        `parent key ${parent.path} has no primary version; rotate it before creating or rotating its children`,
        { parameter: "path", value: parent.path },
      );
    }
    return { key: parent, version: primary };
  }

  async function createKey(pathText: string, options: CreateKeyOptions = {}): Promise<KeyInfo> {
    const path = parseKeyPath(pathText);
    const purpose: KeyPurpose = path.kind === "master" ? "wrap" : path.purpose;
    const algorithm = algorithmFor(purpose, options);
    const mode = modeFor(purpose, options);
    const rotationPeriodMs = rotationPeriodFor(options);
    const canonicalPath = formatKeyPath(path);

    if ((await storage.keys.findByPath(canonicalPath)) !== undefined)
      throw pathInUse(canonicalPath);
    const parentKey = await parentKeyOf(path);
    const parent = await parentVersionFor(parentKey?.id ?? null);

    const keyId = newOpaqueId("key");
    const sealed = await sealer.seal({ keyId, version: 1, purpose, algorithm, mode }, parent);
    const now = clock.now();

    try {
      await storage.write(async (trx) => {
        await storage.keys.insert(
          {
            id: keyId,
            path: canonicalPath,
            kind: path.kind,
            environment: path.environment,
            tenant: path.tenant,
            service: path.kind === "service" ? path.service : "-",
            purpose,
            algorithm,
            mode,
            parent_id: parentKey?.id ?? null,
            parent_tenant: parentKey?.tenant ?? null,
            parent_kind: parentKey?.kind ?? null,
            min_decryption_version: 1,
            rotation_period_ms: rotationPeriodMs,
            created_at: now,
          },
          trx,
        );
        await storage.versions.insert(
          {
            key_id: keyId,
            version: 1,
            state: "primary",
            material: sealed.material,
            salt: sealed.salt,
            public_jwk: sealed.publicJwk,
            parent_key_id: sealed.parentKeyId,
            parent_version: sealed.parentVersion,
            created_at: now,
            activate_at: now,
            retire_at: null,
            updated_at: now,
          },
          trx,
        );
        await recordChange(trx, {
          type: "key.created",
          keyId,
          path: canonicalPath,
          version: 1,
          parentKeyId: sealed.parentKeyId,
          parentVersion: sealed.parentVersion,
          at: now,
        });
      });
    } catch (error) {
      if (constraintViolation(error) === "unique") throw pathInUse(canonicalPath);
      throw error;
    }
    return getKey(keyId);
  }

  async function parentKeyOf(path: KeyPath): Promise<KeyRow | null> {
    const parentPath = parentPathOf(path);
    if (parentPath === null) return null;

    const parentText = formatKeyPath(parentPath);
    const parent = await storage.keys.findByPath(parentText);
    if (parent === undefined) {
      throw new ArborError(
        "KEY_NOT_FOUND",
        `parent master ${quote(parentText)} of ${quote(formatKeyPath(path))} not found; create it first`,
        { parameter: "path", value: parentText },
      );
    }
    return parent;
  }

  async function getKey(reference: string): Promise<KeyInfo> {
    const key = await resolveKey(reference);
    return toKeyInfo(key, await storage.versions.list(key.id));
  }

  async function listKeys(filter: KeyFilter = {}): Promise<KeyInfo[]> {
    const keys = await storage.keys.list(filter);
    return Promise.all(
      keys.map(async (key) => toKeyInfo(key, await storage.versions.list(key.id))),
    );
  }

  async function tree(filter: KeyFilter = {}): Promise<TreeNode[]> {
    const keys = await storage.keys.list(filter);
    const primaryOf = new Map<string, number>();
    for (const key of keys) {
      const primary = await storage.versions.primary(key.id);
      if (primary !== undefined) primaryOf.set(key.id, primary.version);
    }
    return buildTree(keys, primaryOf);
  }

  /** The primary version of a key, checked for the purpose the caller needs it for. */
  async function primaryFor(reference: string, purpose: ServicePurpose): Promise<KeyVersionRef> {
    return primaryOf(await resolveKey(reference, purpose), purpose);
  }

  /** {@link primaryFor} for a key already resolved, which saves the look-up on hot paths. */
  async function primaryOf(key: KeyRow, purpose: ServicePurpose): Promise<KeyVersionRef> {
    requirePurpose(key, purpose);
    const version = await storage.versions.primary(key.id);
    if (version === undefined) {
      throw new ArborError(
        "KEY_STATE_CONFLICT",
        `key ${key.path} has no primary version; rotate it to create one`,
        { parameter: "key", value: key.path },
      );
    }
    return { key, version };
  }

  /**
   * A version that may decrypt (or verify): primary or active, and not below the key's minimum
   * decryption version. `allowRevoked` admits revoked versions too, for rewrap only: it moves
   * ciphertexts off a compromised version without showing their plaintext to anyone.
   */
  async function versionForDecrypt(
    key: KeyRow,
    versionNumber: number,
    options: { allowRevoked?: boolean } = {},
  ): Promise<KeyVersionRef> {
    const version = await storage.versions.find(key.id, versionNumber);
    if (version === undefined) {
      throw new ArborError(
        "KEY_VERSION_NOT_FOUND",
        `key ${key.path} has no version ${versionNumber}`,
        { parameter: "version", value: versionNumber },
      );
    }
    const usable =
      version.state === "primary" ||
      version.state === "active" ||
      (options.allowRevoked === true && version.state === "revoked");
    if (!usable) {
      throw new ArborError(
        "KEY_STATE_CONFLICT",
        `key ${key.path} version ${versionNumber} is ${version.state}; it cannot decrypt`,
        { parameter: "version", value: versionNumber },
      );
    }
    if (versionNumber < key.min_decryption_version) {
      throw new ArborError(
        "KEY_STATE_CONFLICT",
        `key ${key.path} version ${versionNumber} is below the minimum decryption version ${key.min_decryption_version}`,
        { parameter: "version", value: versionNumber },
      );
    }
    return { key, version };
  }

  /** Runs `use` with the version's plaintext material and zeroes it afterwards. */
  async function withMaterial<T>(
    ref: KeyVersionRef,
    use: (material: Uint8Array) => Promise<T> | T,
  ): Promise<T> {
    const material = await resolver.materialOf(ref.key, ref.version);
    try {
      return await use(material);
    } finally {
      zeroize(material);
    }
  }

  // Chains never change once a version exists, so they are cached; the bound only limits memory.
  const chains = new Map<string, string[]>();

  /** The chain of a version as `key_id@version` entries, root first (`root@<root version>`). */
  async function chainOf(keyId: string, versionNumber: number): Promise<string[]> {
    const cacheKey = `${keyId}@${versionNumber}`;
    const cached = chains.get(cacheKey);
    if (cached !== undefined) return cached;

    const chain: string[] = [];
    let current = await storage.versions.find(keyId, versionNumber);
    while (current !== undefined) {
      chain.unshift(`${current.key_id}@${current.version}`);
      if (current.parent_key_id === null) {
        chain.unshift(`${ROOT_PARENT_ID}@${current.parent_version}`);
        break;
      }
      current = await storage.versions.find(current.parent_key_id, current.parent_version);
    }
    if (chains.size >= 10_000) chains.clear();
    chains.set(cacheKey, chain);
    return chain;
  }

  return {
    chainOf,
    createKey,
    getKey,
    listKeys,
    tree,
    resolveKey,
    primaryFor,
    primaryOf,
    versionForDecrypt,
    withMaterial,
    rotate: lifecycle.rotate,
    promoteDuePending: lifecycle.promoteDuePending,
    retireDueSigningVersions: lifecycle.retireDueSigningVersions,
    disableVersion: lifecycle.disableVersion,
    enableVersion: lifecycle.enableVersion,
    revokeVersion: lifecycle.revokeVersion,
    setMinDecryptionVersion: lifecycle.setMinDecryptionVersion,
    /** Zeroes every cached plaintext version (on seal). */
    clearCache: () => cache.clear(),
    /** Forgets cached chains; a root re-wrap changes the root version at their top. */
    clearChainCache: () => chains.clear(),
  };
}

export type KeyTree = ReturnType<typeof createKeyTree>;

/** An environment and optionally a tenant; null fields reach everything at that level. */
export interface KeyScope {
  environment: string | null;
  tenant: string | null;
}

/**
 * True when the key lies inside the scope. A tenant scope reaches only that tenant's keys, not the
 * environment master or environment-level services.
 */
export function isInScope(key: Pick<KeyRow, "environment" | "tenant">, scope: KeyScope): boolean {
  if (scope.environment !== null && key.environment !== scope.environment) return false;
  if (scope.tenant !== null && key.tenant !== scope.tenant) return false;
  return true;
}

export function requirePurpose(key: KeyRow, purpose: KeyPurpose): void {
  if (key.purpose === purpose) return;
  throw new ArborError(
    "PURPOSE_MISMATCH",
    `key ${key.path} has purpose ${key.purpose}; this operation needs a key with purpose ${purpose}`,
    { parameter: "key", value: key.path },
  );
}

function algorithmFor(purpose: KeyPurpose, options: CreateKeyOptions): KeyAlgorithm {
  if (purpose !== "sign") {
    if (options.algorithm !== undefined) {
      throw invalidArgument("algorithm", options.algorithm, `only sign keys take an algorithm`);
    }
    return "AES-256-GCM";
  }
  const algorithm = options.algorithm ?? "EdDSA";
  if (algorithm !== "EdDSA" && algorithm !== "ES256") {
    throw invalidArgument("algorithm", algorithm, `a sign key uses "EdDSA" or "ES256"`);
  }
  return algorithm;
}

function modeFor(purpose: KeyPurpose, options: CreateKeyOptions): "wrapped" | "derived" {
  const mode = options.mode ?? "wrapped";
  if (mode !== "wrapped" && mode !== "derived") {
    throw invalidArgument("mode", mode, `mode is "wrapped" or "derived"`);
  }
  if (mode === "derived" && purpose !== "encrypt") {
    throw invalidArgument(
      "mode",
      mode,
      "only encrypt keys can be derived; masters and sign keys are always wrapped",
    );
  }
  return mode;
}

function rotationPeriodFor(options: CreateKeyOptions): number | null {
  const period = options.rotationPeriodMs ?? null;
  if (period === null) return null;
  if (!Number.isSafeInteger(period) || period < 60_000) {
    throw invalidArgument(
      "rotationPeriod",
      period,
      "the rotation period must be a whole number of milliseconds, at least one minute",
    );
  }
  return period;
}

function keyNotFound(reference: string): ArborError {
  return new ArborError("KEY_NOT_FOUND", `key ${quote(reference)} not found`, {
    parameter: "key",
    value: reference,
  });
}

function pathInUse(path: string): ArborError {
  return new ArborError(
    "PATH_IN_USE",
    `key path ${quote(path)} is already in use; paths are never reused, even after revocation`,
    { parameter: "path", value: path },
  );
}
