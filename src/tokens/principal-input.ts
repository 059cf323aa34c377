import { formatDuration } from "../config/duration.ts";
import { invalidArgument } from "../errors/index.ts";
import { SEGMENT_PATTERN } from "../hierarchy/index.ts";
import { validateName } from "../operators/scope.ts";
import { NO_TENANT } from "../storage/index.ts";
import type { CreateServicePrincipalInput } from "./types.ts";

/** Most scope values and audiences one principal may hold. */
export const MAX_SCOPES = 64;
export const MAX_AUDIENCES = 16;
export const MAX_SCOPE_CHARS = 128;
export const MAX_AUDIENCE_CHARS = 512;
/** Shortest maximum token lifetime a principal may have. */
export const MIN_TOKEN_TTL_MS = 60_000;
/** Maximum overlap an old client secret may keep after a rotation: 30 days. */
export const MAX_SECRET_OVERLAP_MS = 30 * 86_400_000;

// RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
const SCOPE_TOKEN_PATTERN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
// An audience is any printable ASCII without spaces, so it survives a space-separated list.
const AUDIENCE_PATTERN = /^[\x21-\x7e]+$/;

/** A create request after validation, with the tenant sentinel and defaults applied. */
export interface ValidatedPrincipalInput {
  name: string;
  environment: string;
  tenant: string;
  service: string;
  scopes: string[];
  audiences: string[];
  maxTokenTtlMs: number;
}

/** Validates a create request; `defaultTtlMs` and `maxTtlMs` are the token service's. */
export function validatePrincipalInput(
  input: CreateServicePrincipalInput,
  defaultTtlMs: number,
  maxTtlMs: number,
): ValidatedPrincipalInput {
  const name = validateName(input.name);
  const environment = segment("environment", input.environment);
  const tenant =
    input.tenant === undefined || input.tenant === null || input.tenant === NO_TENANT
      ? NO_TENANT
      : segment("tenant", input.tenant);
  const service = segment("service", input.service);

  const scopes = uniqueStrings("scopes", input.scopes ?? [], MAX_SCOPES, (value) => {
    if (value.length > MAX_SCOPE_CHARS || !SCOPE_TOKEN_PATTERN.test(value)) {
      return `each scope is 1 to ${MAX_SCOPE_CHARS} printable ASCII characters without spaces, quotes or backslashes`;
    }
    return null;
  });
  const audiences = uniqueStrings("audiences", input.audiences, MAX_AUDIENCES, (value) => {
    if (value.length > MAX_AUDIENCE_CHARS || !AUDIENCE_PATTERN.test(value)) {
      return `each audience is 1 to ${MAX_AUDIENCE_CHARS} printable ASCII characters without spaces`;
    }
    return null;
  });
  if (audiences.length === 0) {
    throw invalidArgument(
      "audiences",
      audiences,
      "list at least one audience: the resource servers that accept this principal's tokens",
    );
  }

  const maxTokenTtlMs = input.maxTokenTtlMs ?? defaultTtlMs;
  if (
    !Number.isSafeInteger(maxTokenTtlMs) ||
    maxTokenTtlMs < MIN_TOKEN_TTL_MS ||
    maxTokenTtlMs > maxTtlMs
  ) {
    throw invalidArgument(
      "maxTokenTtl",
      maxTokenTtlMs,
      `must be between ${formatDuration(MIN_TOKEN_TTL_MS)} and ${formatDuration(maxTtlMs)}, the maximum token lifetime this server issues`,
    );
  }
  return { name, environment, tenant, service, scopes, audiences, maxTokenTtlMs };
}

/** Validates the overlap of a secret rotation, in milliseconds. */
export function validateOverlap(overlapMs: number): number {
  if (!Number.isSafeInteger(overlapMs) || overlapMs < 0 || overlapMs > MAX_SECRET_OVERLAP_MS) {
    throw invalidArgument(
      "overlap",
      overlapMs,
      `must be between 0 and ${formatDuration(MAX_SECRET_OVERLAP_MS)}`,
    );
  }
  return overlapMs;
}

/** Splits an RFC 6749 `scope` parameter; null when a value is not a valid scope-token. */
export function parseScopeParameter(scope: string): string[] | null {
  const values = scope.split(" ");
  if (values.some((value) => !SCOPE_TOKEN_PATTERN.test(value))) return null;
  return [...new Set(values)];
}

function segment(parameter: string, value: unknown): string {
  if (typeof value !== "string" || !SEGMENT_PATTERN.test(value)) {
    throw invalidArgument(
      parameter,
      value,
      "must be 1 to 63 lower-case letters, digits or hyphens, starting with a letter or digit",
    );
  }
  return value;
}

function uniqueStrings(
  parameter: string,
  values: unknown,
  max: number,
  problem: (value: string) => string | null,
): string[] {
  if (!Array.isArray(values)) throw invalidArgument(parameter, values, "must be a list of strings");
  if (values.length > max) {
    throw invalidArgument(parameter, values, `must have at most ${max} entries`);
  }
  for (const value of values) {
    if (typeof value !== "string" || value === "") {
      throw invalidArgument(parameter, value, "entries must be non-empty strings");
    }
    const reason = problem(value);
    if (reason !== null) throw invalidArgument(parameter, value, reason);
  }
  const strings = values as string[];
  if (new Set(strings).size !== strings.length) {
    throw invalidArgument(parameter, strings, "entries must not repeat");
  }
  return strings;
}
