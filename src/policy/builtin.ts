/**
 * Built-in policies. The guards are `forbid` policies, and in Cedar a satisfied `forbid` beats
 * every `permit`, so no stored policy can override them. The roles are `permit` policies that say
 * which actions a role may take; where it may take them is the guards' business.
 *
 * A principal's own scope is its `env` and `tenant`, `*` meaning every one. A break-glass grant
 * names one environment and a tenant (or `*`) and an expiry; the authorizer puts the grant that
 * covers the request's resource, if any, into `principal.breakGlass`. Deployment-wide resources
 * (`System`, `Policy`) have `env` and `tenant` `*`, so only unscoped principals reach them and no
 * break-glass grant does, because a grant always names one environment.
 */

/** A built-in policy: its Cedar id, its text, and the reason `arbor policy explain` shows. */
export interface BuiltinPolicy {
  id: string;
  reason: string;
  text: string;
}

// The break-glass condition shared by both scope guards: an unexpired grant whose environment is
// the resource's and whose tenant is the resource's or `*`.
const BREAK_GLASS_COVERS_RESOURCE = `principal.breakGlass.until > context.now &&
    principal.breakGlass.env == resource.env &&
    (principal.breakGlass.tenant == "*" || principal.breakGlass.tenant == resource.tenant)`;

export const GUARD_POLICIES: readonly BuiltinPolicy[] = [
  {
    id: "guard.environment",
    reason:
      "the resource is in another environment than the principal's, and no unexpired break-glass grant covers it",
    text: `forbid (principal, action, resource)
when { principal.env != "*" && principal.env != resource.env }
unless { ${BREAK_GLASS_COVERS_RESOURCE} };`,
  },
  {
    id: "guard.tenant",
    reason:
      "the resource is in another tenant than the principal's, and no unexpired break-glass grant covers it",
    text: `forbid (principal, action, resource)
when { principal.tenant != "*" && principal.tenant != resource.tenant }
unless { ${BREAK_GLASS_COVERS_RESOURCE} };`,
  },
  {
    id: "guard.read-only",
    reason: "the principal is read-only and the action is not a read",
    text: `forbid (principal, action, resource)
when { principal.readOnly }
unless { action in Arbor::Action::"read" };`,
  },
  {
    id: "guard.own-service",
    reason: "services and workloads use only their own service's keys",
    text: `forbid (principal, action, resource is Arbor::Key)
when {
  (principal is Arbor::Service || principal is Arbor::Workload) &&
  resource.service != principal.service
}
unless { action == Arbor::Action::"token.introspect" };`,
  },
];

/** Built-in role names; operators get one of the first three from the scope of their token. */
export const BUILTIN_ROLES = [
  "global-admin",
  "environment-admin",
  "tenant-admin",
  "service",
  "auditor",
] as const;
export type BuiltinRole = (typeof BUILTIN_ROLES)[number];

export const ROLE_POLICIES: readonly BuiltinPolicy[] = [
  {
    id: "role.global-admin",
    reason: "global administrators may take every action",
    text: `permit (principal in Arbor::Role::"global-admin", action, resource);`,
  },
  {
    id: "role.environment-admin",
    reason:
      "environment administrators may manage keys, principals and crypto in their environment",
    text: `permit (principal in Arbor::Role::"environment-admin", action in Arbor::Action::"scoped-admin", resource);`,
  },
  {
    id: "role.tenant-admin",
    reason: "tenant administrators may manage keys, principals and crypto in their tenant",
    text: `permit (principal in Arbor::Role::"tenant-admin", action in Arbor::Action::"scoped-admin", resource);`,
  },
  {
    id: "role.service",
    reason: "a service may use its own keys: data keys, encryption, signing and token issuance",
    text: `permit (principal in Arbor::Role::"service", action in Arbor::Action::"crypto", resource is Arbor::Key)
when { resource.service == principal.service };`,
  },
  {
    id: "role.service.tokens",
    reason: "a service may introspect tokens of its scope and revoke its own",
    text: `permit (
  principal in Arbor::Role::"service",
  action in [Arbor::Action::"token.introspect", Arbor::Action::"token.revoke"],
  resource is Arbor::Key
);`,
  },
  {
    id: "role.auditor",
    reason: "auditors may read the audit log and nothing else",
    text: `permit (principal in Arbor::Role::"auditor", action in Arbor::Action::"audit", resource is Arbor::AuditLog);`,
  },
];

export const BUILTIN_POLICIES: readonly BuiltinPolicy[] = [...GUARD_POLICIES, ...ROLE_POLICIES];

/** Policy ids of the scope guards, which `arbor_scope_denials_total` counts by label. */
export const SCOPE_GUARDS = {
  "guard.environment": "environment",
  "guard.tenant": "tenant",
} as const;
