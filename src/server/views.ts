import type { KeyInfo, VersionInfo } from "../hierarchy/index.ts";
import type { OperatorTokenInfo } from "../operators/types.ts";
import { formatDuration } from "../config/index.ts";

/** JSON forms of domain objects: RFC 3339 timestamps and duration strings instead of numbers. */

export function rfc3339(ms: number): string {
  return new Date(ms).toISOString();
}

function optionalRfc3339(ms: number | null): string | null {
  return ms === null ? null : rfc3339(ms);
}

export function versionView(version: VersionInfo) {
  return {
    version: version.version,
    state: version.state,
    parentKeyId: version.parentKeyId,
    parentVersion: version.parentVersion,
    createdAt: rfc3339(version.createdAt),
    activateAt: optionalRfc3339(version.activateAt),
    retireAt: optionalRfc3339(version.retireAt),
    publicJwk: version.publicJwk,
  };
}

export function keyView(key: KeyInfo) {
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
    parentId: key.parentId,
    minDecryptionVersion: key.minDecryptionVersion,
    rotationPeriod: key.rotationPeriodMs === null ? null : formatDuration(key.rotationPeriodMs),
    primaryVersion: key.primaryVersion,
    createdAt: rfc3339(key.createdAt),
    versions: key.versions.map(versionView),
  };
}

export function operatorTokenView(info: OperatorTokenInfo) {
  return {
    id: info.id,
    name: info.name,
    environment: info.environment,
    tenant: info.tenant,
    readOnly: info.readOnly,
    root: info.root,
    createdAt: rfc3339(info.createdAt),
    expiresAt: optionalRfc3339(info.expiresAt),
    revokedAt: optionalRfc3339(info.revokedAt),
  };
}
