import type { KeyRow } from "../storage/repositories/keys.ts";
import type { KeyVersionRow } from "../storage/repositories/key-versions.ts";
import type { KeyInfo, TreeNode, VersionInfo } from "./types.ts";

export const ROOT_PARENT_ID = "root";

export function toVersionInfo(row: KeyVersionRow): VersionInfo {
  return {
    version: row.version,
    state: row.state,
    parentKeyId: row.parent_key_id ?? ROOT_PARENT_ID,
    parentVersion: row.parent_version,
    createdAt: Number(row.created_at),
    activateAt: row.activate_at === null ? null : Number(row.activate_at),
    retireAt: row.retire_at === null ? null : Number(row.retire_at),
    publicJwk:
      row.public_jwk === null ? null : (JSON.parse(row.public_jwk) as Record<string, unknown>),
  };
}

export function toKeyInfo(key: KeyRow, versions: KeyVersionRow[]): KeyInfo {
  return {
    id: key.id,
    path: key.path,
    kind: key.kind,
    environment: key.environment,
    tenant: key.tenant,
    service: key.service,
    purpose: key.purpose,
    algorithm: key.algorithm,
    mode: key.mode,
    parentId: key.parent_id,
    minDecryptionVersion: key.min_decryption_version,
    rotationPeriodMs: key.rotation_period_ms === null ? null : Number(key.rotation_period_ms),
    primaryVersion: versions.find((v) => v.state === "primary")?.version ?? null,
    createdAt: Number(key.created_at),
    versions: versions.map(toVersionInfo),
  };
}

/** Nests keys under their parents; `primaryOf` maps key id to its primary version number. */
export function buildTree(keys: KeyRow[], primaryOf: Map<string, number>): TreeNode[] {
  const nodes = new Map<string, TreeNode>();
  for (const key of keys) {
    nodes.set(key.id, {
      id: key.id,
      path: key.path,
      kind: key.kind,
      purpose: key.purpose,
      primaryVersion: primaryOf.get(key.id) ?? null,
      children: [],
    });
  }

  const roots: TreeNode[] = [];
  for (const key of keys) {
    const node = nodes.get(key.id)!;
    const parent = key.parent_id === null ? undefined : nodes.get(key.parent_id);
    if (parent === undefined) roots.push(node);
    else parent.children.push(node);
  }
  return roots;
}
