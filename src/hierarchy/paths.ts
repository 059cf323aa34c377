import { ArborError, quote } from "../errors/index.ts";
import { NO_TENANT, type KeyKind } from "../storage/schema.ts";

/** One path segment: lower-case letters, digits and hyphens, starting with a letter or digit. */
export const SEGMENT_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

export type ServicePurpose = "encrypt" | "sign";

export interface MasterPath {
  kind: Extract<KeyKind, "master">;
  environment: string;
  /** `-` for an environment master. */
  tenant: string;
}

export interface ServicePath {
  kind: Extract<KeyKind, "service">;
  environment: string;
  tenant: string;
  service: string;
  purpose: ServicePurpose;
}

export type KeyPath = MasterPath | ServicePath;

/**
 * Parses a key path: `env` and `env/tenant` name masters; `env/service:purpose` and
 * `env/tenant/service:purpose` name service keys. When `impliedPurpose` is given (a command that
 * only makes sense for one purpose), `env/tenant/service` may omit `:purpose`.
 */
export function parseKeyPath(text: string, impliedPurpose?: ServicePurpose): KeyPath {
  const colon = text.indexOf(":");
  const body = colon === -1 ? text : text.slice(0, colon);
  const purposeText = colon === -1 ? undefined : text.slice(colon + 1);
  const segments = body.split("/");

  for (const segment of segments) {
    if (!SEGMENT_PATTERN.test(segment)) {
      throw invalidPath(text, `segment ${quote(segment)} must match [a-z0-9][a-z0-9-]{0,62}`);
    }
  }
  if (segments.includes(NO_TENANT)) throw invalidPath(text, `"-" is reserved`);

  if (purposeText !== undefined) {
    if (purposeText !== "encrypt" && purposeText !== "sign") {
      throw invalidPath(text, `purpose ${quote(purposeText)} must be "encrypt" or "sign"`);
    }
    return servicePath(text, segments, purposeText);
  }

  if (segments.length === 3 && impliedPurpose !== undefined) {
    return servicePath(text, segments, impliedPurpose);
  }
  if (segments.length === 1)
    return { kind: "master", environment: segments[0]!, tenant: NO_TENANT };
  if (segments.length === 2)
    return { kind: "master", environment: segments[0]!, tenant: segments[1]! };
  throw invalidPath(text, "a service key path ends with :encrypt or :sign");
}

function servicePath(text: string, segments: string[], purpose: ServicePurpose): ServicePath {
  if (segments.length === 2) {
    return {
      kind: "service",
      environment: segments[0]!,
      tenant: NO_TENANT,
      service: segments[1]!,
      purpose,
    };
  }
  if (segments.length === 3) {
    return {
      kind: "service",
      environment: segments[0]!,
      tenant: segments[1]!,
      service: segments[2]!,
      purpose,
    };
  }
  throw invalidPath(
    text,
    "a service key path is env/service:purpose or env/tenant/service:purpose",
  );
}

/** Formats a parsed path back to its canonical text. */
export function formatKeyPath(path: KeyPath): string {
  const scope = path.tenant === NO_TENANT ? path.environment : `${path.environment}/${path.tenant}`;
  return path.kind === "master" ? scope : `${scope}/${path.service}:${path.purpose}`;
}

/** The path of the master a key sits under: the tenant master, or the environment master. */
export function parentPathOf(path: KeyPath): MasterPath | null {
  if (path.kind === "master") {
    return path.tenant === NO_TENANT
      ? null
      : { kind: "master", environment: path.environment, tenant: NO_TENANT };
  }
  return { kind: "master", environment: path.environment, tenant: path.tenant };
}

function invalidPath(text: string, reason: string): ArborError {
  return new ArborError("INVALID_PATH", `invalid key path ${quote(text)}: ${reason}`, {
    parameter: "path",
    value: text,
  });
}
