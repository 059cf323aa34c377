import type { Transaction } from "kysely";

import { ArborError, invalidArgument } from "../errors/index.ts";
import { constraintViolation } from "../storage/errors.ts";
import type { KeyRow } from "../storage/repositories/keys.ts";
import type { Database, VersionState } from "../storage/schema.ts";
import type { ServicePurpose } from "./paths.ts";
import type { ParentVersion, createVersionSealer } from "./sealing.ts";
import type { KeyChange, KeyTreeDeps, RotateOptions, VersionInfo } from "./types.ts";
import { toVersionInfo } from "./views.ts";

/** Rotation attempts before giving up when other rotations of the same key keep winning. */
const MAX_ROTATION_ATTEMPTS = 64;
const DEFAULT_SIGN_RETIRE_AFTER_MS = 20 * 60_000;

interface LifecycleDeps extends KeyTreeDeps {
  sealer: ReturnType<typeof createVersionSealer>;
  recordChange(trx: Transaction<Database>, change: KeyChange): Promise<void>;
  parentVersionFor(parentId: string | null): Promise<ParentVersion | null>;
  resolveKey(reference: string, impliedPurpose?: ServicePurpose): Promise<KeyRow>;
}

/** Version states and their transitions: rotation, promotion, disable, enable, revoke. */
export function createVersionLifecycle(deps: LifecycleDeps) {
  const { storage, clock, cache } = deps;
  const signRetireAfterMs = deps.signRetireAfterMs ?? DEFAULT_SIGN_RETIRE_AFTER_MS;

  /**
   * Creates version n+1. Material is generated and sealed outside the transaction (it may call the
   * root); the transaction then checks that n is still the latest version. If another rotation won,
   * the attempt is sealed again for the next number, so concurrent rotations do not lose a version (up to 64 attempts, then CONCURRENT_UPDATE).
   */
  async function rotate(reference: string, options: RotateOptions = {}): Promise<VersionInfo> {
    const publishDelayMs = options.publishDelayMs ?? 0;
    if (!Number.isSafeInteger(publishDelayMs) || publishDelayMs < 0) {
      throw invalidArgument(
        "publishDelay",
        publishDelayMs,
        "must be a whole number of milliseconds, 0 or more",
      );
    }
    const key = await deps.resolveKey(reference);

    for (let attempt = 0; attempt < MAX_ROTATION_ATTEMPTS; attempt++) {
      const latest = await storage.versions.maxVersion(key.id);
      const next = latest + 1;
      const parent = await deps.parentVersionFor(key.parent_id);
      const sealed = await deps.sealer.seal(
        {
          keyId: key.id,
          version: next,
          purpose: key.purpose,
          algorithm: key.algorithm,
          mode: key.mode,
        },
        parent,
      );

      const now = clock.now();
      const becomesPrimary = publishDelayMs === 0;
      try {
        const inserted = await storage.write(async (trx) => {
          if ((await storage.versions.maxVersion(key.id, trx)) !== latest) return false;

          if (becomesPrimary) await demotePrimary(key, now, trx);
          await storage.versions.insert(
            {
              key_id: key.id,
              version: next,
              state: becomesPrimary ? "primary" : "pending",
              material: sealed.material,
              salt: sealed.salt,
              public_jwk: sealed.publicJwk,
              parent_key_id: sealed.parentKeyId,
              parent_version: sealed.parentVersion,
              created_at: now,
              activate_at: now + publishDelayMs,
              retire_at: null,
              updated_at: now,
            },
            trx,
          );
          await deps.recordChange(
            trx,
            change("key.rotated", key, next, sealed.parentKeyId, sealed.parentVersion, now),
          );
          return true;
        });
        if (inserted) return toVersionInfo((await storage.versions.find(key.id, next))!);
      } catch (error) {
        // PostgreSQL at read committed can let two transactions see the same latest version.
        // The primary key then rejects the second insert, which is retried like a lost race.
        if (constraintViolation(error) !== "unique") throw error;
      }
    }
    throw new ArborError(
      "CONCURRENT_UPDATE",
      `key ${key.path} was rotated concurrently ${MAX_ROTATION_ATTEMPTS} times while this rotation retried; try again`,
      { parameter: "key", value: key.path },
    );
  }

  /** The current primary becomes active; a `sign` version gets the moment it leaves the JWKS. */
  async function demotePrimary(
    key: KeyRow,
    now: number,
    trx: Transaction<Database>,
  ): Promise<void> {
    const current = await storage.versions.primary(key.id, trx);
    if (current === undefined) return;

    const retireAt = key.purpose === "sign" ? now + signRetireAfterMs : null;
    await storage.versions.transition(
      key.id,
      current.version,
      ["primary"],
      "active",
      now,
      { retire_at: retireAt },
      trx,
    );
  }

  /**
   * Promotes pending versions whose publish delay has passed, oldest first; returns how many
   * became primary. A pending version older than the current primary becomes active instead.
   */
  async function promoteDuePending(): Promise<number> {
    const now = clock.now();
    const due = await storage.versions.duePending(now);
    let promoted = 0;
    for (const version of due) {
      const key = await storage.keys.findById(version.key_id);
      if (key === undefined) continue;

      const moved = await storage.write(async (trx) => {
        const pending = await storage.versions.find(key.id, version.version, trx);
        if (pending?.state !== "pending") return false;

        // A later rotation already made a newer version primary: this one is superseded and
        // becomes active (still published and verifying) instead of replacing the newer one.
        const current = await storage.versions.primary(key.id, trx);
        if (current !== undefined && current.version > version.version) {
          const retireAt = key.purpose === "sign" ? now + signRetireAfterMs : null;
          await storage.versions.transition(
            key.id,
            version.version,
            ["pending"],
            "active",
            now,
            { retire_at: retireAt },
            trx,
          );
          await deps.recordChange(
            trx,
            change("key.version_promoted", key, version.version, null, null, now),
          );
          return false;
        }

        await demotePrimary(key, now, trx);
        await storage.versions.transition(
          key.id,
          version.version,
          ["pending"],
          "primary",
          now,
          {},
          trx,
        );
        await deps.recordChange(
          trx,
          change("key.version_promoted", key, version.version, null, null, now),
        );
        return true;
      });
      if (moved) promoted++;
    }
    return promoted;
  }

  /** Disables `sign` versions past their `retire_at`, which takes them out of the JWKS. */
  async function retireDueSigningVersions(): Promise<number> {
    const now = clock.now();
    const due = await storage.db
      .selectFrom("key_versions")
      .innerJoin("keys", "keys.id", "key_versions.key_id")
      .select(["key_versions.key_id", "key_versions.version"])
      .where("keys.purpose", "=", "sign")
      .where("key_versions.state", "=", "active")
      .where("key_versions.retire_at", "<=", now)
      .execute();

    let retired = 0;
    for (const row of due) {
      const key = await storage.keys.findById(row.key_id);
      if (key === undefined) continue;
      if (await transition(key, row.version, ["active"], "disabled", "key.version_disabled"))
        retired++;
    }
    return retired;
  }

  async function transition(
    key: KeyRow,
    version: number,
    from: readonly VersionState[],
    to: VersionState,
    type: KeyChange["type"],
  ): Promise<boolean> {
    const now = clock.now();
    const moved = await storage.write(async (trx) => {
      const changed = await storage.versions.transition(key.id, version, from, to, now, {}, trx);
      if (changed) await deps.recordChange(trx, change(type, key, version, null, null, now));
      return changed;
    });
    // Cached children of a version that can no longer be used would otherwise stay usable until
    // they age out. Clearing everything is cheap because these changes are rare.
    if (moved && to !== "active") cache.clear();
    return moved;
  }

  async function versionOf(reference: string, version: number) {
    const key = await deps.resolveKey(reference);
    if (!Number.isSafeInteger(version) || version < 1) {
      throw invalidArgument("version", version, "a key version is a whole number from 1");
    }
    const row = await storage.versions.find(key.id, version);
    if (row === undefined) {
      throw new ArborError("KEY_VERSION_NOT_FOUND", `key ${key.path} has no version ${version}`, {
        parameter: "version",
        value: version,
      });
    }
    return { key, row };
  }

  /** Disables an active or pending version (reversible). The primary must be rotated away first. */
  async function disableVersion(reference: string, version: number): Promise<VersionInfo> {
    const { key, row } = await versionOf(reference, version);
    if (row.state === "primary") {
      throw stateConflict(
        key,
        version,
        row.state,
        "disable",
        "rotate the key first so another version is primary",
      );
    }
    if (
      !(await transition(key, version, ["active", "pending"], "disabled", "key.version_disabled"))
    ) {
      throw stateConflict(key, version, row.state, "disable");
    }
    return toVersionInfo((await storage.versions.find(key.id, version))!);
  }

  /** Re-enables a disabled version; it comes back as active (decrypt and verify only). */
  async function enableVersion(reference: string, version: number): Promise<VersionInfo> {
    const { key, row } = await versionOf(reference, version);
    if (!(await transition(key, version, ["disabled"], "active", "key.version_enabled"))) {
      throw stateConflict(key, version, row.state, "enable");
    }
    return toVersionInfo((await storage.versions.find(key.id, version))!);
  }

  /**
   * Revokes one version (irreversible). A revoked primary leaves the key without a primary until
   * it is rotated, so nothing new is ever produced under a compromised version.
   */
  async function revokeVersion(reference: string, version: number): Promise<VersionInfo> {
    const { key, row } = await versionOf(reference, version);
    if (
      !(await transition(
        key,
        version,
        ["pending", "primary", "active", "disabled"],
        "revoked",
        "key.version_revoked",
      ))
    ) {
      throw stateConflict(key, version, row.state, "revoke");
    }
    return toVersionInfo((await storage.versions.find(key.id, version))!);
  }

  /** Versions below the minimum refuse to decrypt; the minimum cannot pass the primary version. */
  async function setMinDecryptionVersion(reference: string, version: number): Promise<number> {
    const key = await deps.resolveKey(reference);
    if (key.purpose !== "encrypt") {
      throw new ArborError(
        "PURPOSE_MISMATCH",
        `key ${key.path} has purpose ${key.purpose}; a minimum decryption version applies to encrypt keys`,
        { parameter: "key", value: key.path },
      );
    }
    const primary = await storage.versions.primary(key.id);
    const ceiling = primary?.version ?? (await storage.versions.maxVersion(key.id));
    if (!Number.isSafeInteger(version) || version < 1 || version > ceiling) {
      throw invalidArgument(
        "version",
        version,
        `must be between 1 and ${ceiling}, the primary version`,
      );
    }

    const now = clock.now();
    await storage.write(async (trx) => {
      await storage.keys.setMinDecryptionVersion(key.id, version, trx);
      await deps.recordChange(
        trx,
        change("key.min_decryption_version_set", key, version, null, null, now),
      );
    });
    return version;
  }

  return {
    rotate,
    promoteDuePending,
    retireDueSigningVersions,
    disableVersion,
    enableVersion,
    revokeVersion,
    setMinDecryptionVersion,
  };
}

function change(
  type: KeyChange["type"],
  key: KeyRow,
  version: number | null,
  parentKeyId: string | null,
  parentVersion: number | null,
  at: number,
): KeyChange {
  return { type, keyId: key.id, path: key.path, version, parentKeyId, parentVersion, at };
}

function stateConflict(
  key: KeyRow,
  version: number,
  state: VersionState,
  action: string,
  hint?: string,
): ArborError {
  const suffix = hint === undefined ? "" : `; ${hint}`;
  return new ArborError(
    "KEY_STATE_CONFLICT",
    `cannot ${action} key ${key.path} version ${version}: it is ${state}${suffix}`,
    { parameter: "version", value: version },
  );
}
