import type { BreakGlassFacts } from "./entities.ts";

/**
 * A grant attached to a principal (operator token or service principal, by id): membership in a
 * role, or break-glass access to one environment (and a tenant or every tenant of it) until an
 * expiry. Grants are stored, versioned through the audit log, and revocable.
 */
export interface PolicyGrant {
  /** `grt_` followed by 26 base32 characters. */
  id: string;
  principalId: string;
  kind: "role" | "break_glass";
  /** The role of a role grant; null for break-glass. */
  role: string | null;
  /** The environment a break-glass grant opens; null for a role grant. */
  environment: string | null;
  /** The tenant a break-glass grant opens: a tenant, `-` for environment-level keys, or `*`. */
  tenant: string | null;
  /** Why the grant exists, as its creator wrote it; shown in audit events. */
  reason: string;
  createdAt: number;
  /** The principal id of the creator. */
  createdBy: string;
  /** Null only for role grants without an end; break-glass grants always expire. */
  expiresAt: number | null;
  revokedAt: number | null;
}

export function isActiveGrant(grant: PolicyGrant, now: number): boolean {
  if (grant.revokedAt !== null) return false;
  return grant.expiresAt === null || grant.expiresAt > now;
}

/** The grants in effect, by principal id; rebuilt whenever a grant changes. */
export class GrantIndex {
  readonly #byPrincipal = new Map<string, PolicyGrant[]>();

  constructor(grants: readonly PolicyGrant[] = []) {
    for (const grant of grants) {
      if (grant.revokedAt !== null) continue;
      const list = this.#byPrincipal.get(grant.principalId) ?? [];
      list.push(grant);
      this.#byPrincipal.set(grant.principalId, list);
    }
  }

  /** Role names the principal holds through unexpired role grants. */
  rolesOf(principalId: string, now: number): string[] {
    return (this.#byPrincipal.get(principalId) ?? [])
      .filter((grant) => grant.kind === "role" && isActiveGrant(grant, now))
      .map((grant) => grant.role!);
  }

  /** The principal's unexpired break-glass grants. */
  breakGlassOf(principalId: string, now: number): BreakGlassFacts[] {
    return (this.#byPrincipal.get(principalId) ?? [])
      .filter((grant) => grant.kind === "break_glass" && isActiveGrant(grant, now))
      .map((grant) => ({
        grantId: grant.id,
        expiresAt: grant.expiresAt!,
        environment: grant.environment!,
        tenant: grant.tenant!,
      }));
  }
}
