import type { EntityJson } from "./cedar.ts";
import type { PrincipalType, ResourceType } from "./actions.ts";
import { ANY, NAMESPACE } from "./schema.ts";

/** Value of `service` and `tenant` where there is none: operators' service, environment-level keys' tenant. */
export const NONE = "-";

/** Facts about a principal that the authorizer decides on; null scope fields reach every environment or tenant. */
export interface PrincipalFacts {
  type: PrincipalType;
  id: string;
  environment: string | null;
  tenant: string | null;
  /** The service of a service or workload; null for operators. */
  service: string | null;
  readOnly: boolean;
  root: boolean;
  /** Role names the principal is a member of, built-in or custom. */
  roles: readonly string[];
}

/** A break-glass grant that covers the request's resource. */
export interface BreakGlassFacts {
  grantId: string;
  /** Milliseconds since the Unix epoch; the grant is void from this instant on. */
  expiresAt: number;
  environment: string;
  /** A tenant, `-` for the environment-level keys, or `*` for every tenant of the environment. */
  tenant: string;
}

/**
 * A resource as Cedar receives it. `env` and `tenant` are always set (`*` for every one, `-` for an
 * environment-level key); the other attributes depend on the type and are checked against the
 * schema on every request.
 */
export interface ResourceFacts {
  type: ResourceType;
  id: string;
  env: string;
  tenant: string;
  attrs?: Record<string, string | number>;
}

/** The scope of a principal or resource as `env` and `tenant` strings. */
export interface ScopeValues {
  env: string;
  tenant: string;
}

export function principalScope(facts: Pick<PrincipalFacts, "environment" | "tenant">): ScopeValues {
  return { env: facts.environment ?? ANY, tenant: facts.tenant ?? ANY };
}

/**
 * True when the resource lies in the principal's own scope: the same environment (or the
 * principal reaches every one) and the same tenant (or the principal reaches every tenant of its
 * environment). This is what the two scope guards allow without break-glass.
 */
export function withinOwnScope(principal: ScopeValues, resource: ScopeValues): boolean {
  const environment = principal.env === ANY || principal.env === resource.env;
  const tenant = principal.tenant === ANY || principal.tenant === resource.tenant;
  return environment && tenant;
}

/** Returns the scope guard a resource outside the principal's scope crosses, for the denial metric. */
export function crossedScope(
  principal: ScopeValues,
  resource: ScopeValues,
): "environment" | "tenant" | null {
  if (principal.env !== ANY && principal.env !== resource.env) return "environment";
  if (principal.tenant !== ANY && principal.tenant !== resource.tenant) return "tenant";
  return null;
}

/** True when an unexpired grant covers the resource, by the same rule as the guards. */
export function breakGlassCovers(
  grant: BreakGlassFacts,
  resource: ScopeValues,
  now: number,
): boolean {
  if (grant.expiresAt <= now || grant.environment !== resource.env) return false;
  return grant.tenant === ANY || grant.tenant === resource.tenant;
}

export function entityUid(type: string, id: string): { type: string; id: string } {
  return { type: `${NAMESPACE}::${type}`, id };
}

/** Builds the principal entity, with every attribute the schema requires. */
export function principalEntity(
  facts: PrincipalFacts,
  breakGlass: BreakGlassFacts | null,
): EntityJson {
  const scope = principalScope(facts);
  return {
    uid: entityUid(facts.type, facts.id),
    attrs: {
      env: scope.env,
      tenant: scope.tenant,
      service: facts.service ?? NONE,
      readOnly: facts.readOnly,
      root: facts.root,
      breakGlass:
        breakGlass === null
          ? { grant: "", until: 0, env: "", tenant: "" }
          : {
              grant: breakGlass.grantId,
              until: breakGlass.expiresAt,
              env: breakGlass.environment,
              tenant: breakGlass.tenant,
            },
    },
    parents: facts.roles.map((role) => entityUid("Role", role)),
  };
}

export function resourceEntity(facts: ResourceFacts): EntityJson {
  return {
    uid: entityUid(facts.type, facts.id),
    attrs: { ...facts.attrs, env: facts.env, tenant: facts.tenant },
    parents: [],
  };
}

/** The facts of a key as the key tree stores it. */
export interface KeyFacts {
  /** The key id, or null for a key that does not exist yet (creation). */
  id: string | null;
  path: string;
  environment: string;
  tenant: string;
  service: string;
  kind: string;
  purpose: string;
}

export function keyResource(key: KeyFacts): ResourceFacts {
  return {
    type: "Key",
    // A key being created has no id yet; its path names it, and `new:` keeps it apart from ids.
    id: key.id ?? `new:${key.path}`,
    env: key.environment,
    tenant: key.tenant,
    attrs: { service: key.service, kind: key.kind, purpose: key.purpose, path: key.path },
  };
}

export function keyVersionResource(key: KeyFacts, version: number): ResourceFacts {
  return {
    type: "KeyVersion",
    id: `${key.id ?? key.path}@${version}`,
    env: key.environment,
    tenant: key.tenant,
    attrs: { service: key.service, key: key.path, version },
  };
}

/** Builds a managed principal (operator token or service principal) as a resource. */
export function principalResource(target: {
  id: string;
  kind: "operator" | "service";
  environment: string | null;
  tenant: string | null;
  service: string | null;
}): ResourceFacts {
  return {
    type: "Principal",
    id: target.id,
    env: target.environment ?? ANY,
    tenant: target.tenant ?? ANY,
    attrs: { service: target.service ?? NONE, kind: target.kind },
  };
}

/** Builds a resource of a type with only `env` and `tenant` (environments, tenants, audit logs, policies, the system). */
export function scopeResource(
  type: Exclude<ResourceType, "Key" | "KeyVersion" | "Principal">,
  scope: { environment: string | null; tenant: string | null },
): ResourceFacts {
  const env = scope.environment ?? ANY;
  const tenant = scope.tenant ?? ANY;
  return { type, id: tenant === ANY ? env : `${env}/${tenant}`, env, tenant };
}
