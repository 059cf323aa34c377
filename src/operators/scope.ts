import { ArborError, invalidArgument, quote } from "../errors/index.ts";
import { SEGMENT_PATTERN } from "../hierarchy/paths.ts";
import type { OperatorTokenFilter } from "../storage/repositories/operator-tokens.ts";
import type { CreateOperatorTokenInput, OperatorScope } from "./types.ts";

const MAX_NAME_CHARS = 64;
// Control, format, private-use, unassigned and surrogate code points, and line or paragraph
// separators: none of them belongs in a name shown in a terminal or a log line.
const NAME_FORBIDDEN = /[\p{C}\p{Zl}\p{Zp}]/u;

/** The scope fields of a create request after validation; undefined still means "inherit". */
export interface RequestedScope {
  environment: string | null | undefined;
  tenant: string | null | undefined;
  readOnly: boolean;
}

export function validateName(name: unknown): string {
  if (typeof name !== "string") throw invalidArgument("name", name, "must be a string");

  const length = [...name].length;
  if (length < 1 || length > MAX_NAME_CHARS) {
    throw invalidArgument("name", name, `must be 1 to ${MAX_NAME_CHARS} characters long`);
  }
  if (NAME_FORBIDDEN.test(name)) {
    throw invalidArgument("name", name, "must not contain control characters or line breaks");
  }
  if (name.trim() === "") throw invalidArgument("name", name, "must not be only spaces");
  return name;
}

/** Validates the scope fields of a create request without resolving inheritance. */
export function validateRequestedScope(input: CreateOperatorTokenInput): RequestedScope {
  const environment = validateSegment("environment", input.environment);
  const tenant = validateSegment("tenant", input.tenant);
  if (tenant !== null && tenant !== undefined && environment === null) {
    throw invalidArgument("tenant", tenant, "a tenant scope needs an environment: set environment");
  }

  const readOnly = input.readOnly ?? false;
  if (typeof readOnly !== "boolean") {
    throw invalidArgument("readOnly", readOnly, "must be true or false");
  }
  return { environment, tenant, readOnly };
}

function validateSegment(
  parameter: string,
  value: string | null | undefined,
): string | null | undefined {
  if (value === null || value === undefined) return value;
  if (typeof value !== "string" || !SEGMENT_PATTERN.test(value)) {
    throw invalidArgument(
      parameter,
      value,
      "must be 1 to 63 lower-case letters, digits or hyphens, starting with a letter or digit",
    );
  }
  return value;
}

/**
 * Fills in omitted fields from the creator: an omitted environment is the creator's, and an
 * omitted tenant is the creator's when the new token stays in the creator's environment.
 */
export function resolveScope(creator: OperatorScope, requested: RequestedScope): OperatorScope {
  const environment =
    requested.environment === undefined ? creator.environment : requested.environment;
  let tenant = requested.tenant;
  if (tenant === undefined) tenant = environment === creator.environment ? creator.tenant : null;

  if (tenant !== null && environment === null) {
    throw invalidArgument("tenant", tenant, "a tenant scope needs an environment: set environment");
  }
  return { environment, tenant, readOnly: requested.readOnly };
}

/**
 * Throws FORBIDDEN unless `creator` reaches everything `requested` reaches. Read-only creators
 * are rejected before this check.
 */
export function assertCanGrant(
  creatorId: string,
  creator: OperatorScope,
  requested: OperatorScope,
): void {
  if (creator.environment !== null && requested.environment !== creator.environment) {
    throw new ArborError(
      "FORBIDDEN",
      `operator token ${creatorId} is scoped to environment ${quote(creator.environment)} and ` +
        `cannot create a token for ${describeEnvironment(requested.environment)}`,
      { parameter: "environment", value: requested.environment },
    );
  }
  if (creator.tenant !== null && requested.tenant !== creator.tenant) {
    throw new ArborError(
      "FORBIDDEN",
      `operator token ${creatorId} is scoped to tenant ${quote(creator.tenant)} and cannot ` +
        `create a token for ${describeTenant(requested.tenant)}`,
      { parameter: "tenant", value: requested.tenant },
    );
  }
}

function describeEnvironment(environment: string | null): string {
  return environment === null ? "every environment" : `environment ${quote(environment)}`;
}

function describeTenant(tenant: string | null): string {
  return tenant === null ? "every tenant" : `tenant ${quote(tenant)}`;
}

/** True when a token with the given environment and tenant lies inside `actor`'s scope. */
export function isWithinScope(
  actor: OperatorScope,
  token: { environment: string | null; tenant: string | null },
): boolean {
  if (actor.environment !== null && token.environment !== actor.environment) return false;
  if (actor.tenant !== null && token.tenant !== actor.tenant) return false;
  return true;
}

/** The repository filter that selects exactly the tokens `isWithinScope` accepts. */
export function scopeFilter(actor: OperatorScope): OperatorTokenFilter {
  const filter: OperatorTokenFilter = {};
  if (actor.environment !== null) filter.environment = actor.environment;
  if (actor.tenant !== null) filter.tenant = actor.tenant;
  return filter;
}
