import { createHmac } from "node:crypto";

import type { Clock } from "../clock.ts";
import { encodeLengthPrefixed, randomBytes, zeroize } from "../crypto/index.ts";
import type { RootProvider } from "../root/types.ts";
import type { Storage } from "../storage/storage.ts";

const AUDIT_KEY_AAD = encodeLengthPrefixed("arbor/audit-hmac-key/v1");
const AUDIT_KEY_BYTES = 32;

/**
 * The audit HMAC key: 256 random bits wrapped by the root and stored in `audit_keys`. Events carry
 * HMAC-SHA256 fingerprints of values that must be correlated but never revealed, such as a wrong
 * secret presented again and again. The key is unwrapped lazily once the root is unsealed and
 * zeroed on seal; while sealed, fingerprints are null.
 */
export function createAuditKey(deps: { storage: Storage; root: RootProvider; clock: Clock }) {
  let key: Uint8Array | null = null;
  let loading: Promise<Uint8Array> | null = null;

  async function load(): Promise<Uint8Array> {
    const stored = await deps.storage.db.selectFrom("audit_keys").selectAll().executeTakeFirst();
    if (stored !== undefined) {
      return deps.root.unwrap(
        { rootVersion: stored.root_version, ciphertext: new Uint8Array(stored.wrapped) },
        AUDIT_KEY_AAD,
      );
    }
    const fresh = randomBytes(AUDIT_KEY_BYTES);
    try {
      // Wrapped before the transaction: no root call holds the write lock.
      const wrapped = await deps.root.wrap(fresh, AUDIT_KEY_AAD);
      await deps.storage.write(async (trx) => {
        await trx
          .insertInto("audit_keys")
          .values({
            id: 1,
            root_version: wrapped.rootVersion,
            wrapped: wrapped.ciphertext,
            created_at: deps.clock.now(),
          })
          .onConflict((oc) => oc.column("id").doNothing())
          .execute();
      });
    } finally {
      zeroize(fresh);
    }
    // Another node may have won the insert; read back whichever key is stored.
    return load();
  }

  return {
    /**
     * Returns `hmac-sha256:<base64url>` over the length-prefixed kind and value, or null while the
     * root is sealed or the key cannot be read (the event is still written, without it).
     */
    async fingerprint(kind: string, value: string): Promise<string | null> {
      if (deps.root.status().state !== "unsealed") {
        this.forget();
        return null;
      }
      try {
        loading ??= load();
        key ??= await loading;
      } catch {
        loading = null;
        return null;
      }
      const mac = createHmac("sha256", key).update(encodeLengthPrefixed(kind, value)).digest();
      return `hmac-sha256:${mac.toString("base64url")}`;
    },

    /** Zeroes the key; called on seal. */
    forget(): void {
      if (key !== null) zeroize(key);
      key = null;
      loading = null;
    },
  };
}

export type AuditKey = ReturnType<typeof createAuditKey>;
