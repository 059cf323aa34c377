import type { KeyVersionRow, Storage, VersionState } from "../storage/index.ts";

/** States in which a version may still vouch for the versions it wrapped. */
const USABLE_AS_PARENT: ReadonlySet<VersionState> = new Set(["pending", "primary", "active"]);

/**
 * True when every version above `version` up to the root can still be used, the same rule the
 * material resolver applies before it opens a child. A sign version under a disabled or revoked
 * master version can no longer sign, so its tokens and its JWKS entry go with it.
 */
export async function ancestorsUsable(
  storage: Pick<Storage, "versions">,
  version: Pick<KeyVersionRow, "parent_key_id" | "parent_version">,
): Promise<boolean> {
  let current = version;
  while (current.parent_key_id !== null) {
    const parent = await storage.versions.find(current.parent_key_id, current.parent_version);
    if (parent === undefined || !USABLE_AS_PARENT.has(parent.state)) return false;
    current = parent;
  }
  return true;
}
