/**
 * The Cedar actions Arbor decides, their resource types and the action groups the built-in roles
 * and guards use. Every route's `action` is one of these names, and the Cedar schema is generated
 * from this table, so a route cannot name an action the schema does not know.
 */

/** Principal entity types: operators (operator tokens), services (client credentials) and workloads (access tokens). */
export const PRINCIPAL_TYPES = ["Operator", "Service", "Workload"] as const;
export type PrincipalType = (typeof PRINCIPAL_TYPES)[number];

/** Resource entity types. Each has `env` and `tenant`; `*` means every environment or tenant. */
export const RESOURCE_TYPES = [
  "Key",
  "KeyVersion",
  "Environment",
  "Tenant",
  "Principal",
  "Policy",
  "AuditLog",
  "System",
] as const;
export type ResourceType = (typeof RESOURCE_TYPES)[number];

/**
 * Action groups. `read` is what read-only principals may do; `scoped-admin` is what environment
 * and tenant administrators may do inside their scope; `crypto` is what a service may do with its
 * own keys; `token` covers the OAuth endpoints; `audit` is the auditor's; `deployment` acts on the
 * whole deployment and belongs to global administrators only.
 */
export const ACTION_GROUPS = [
  "read",
  "scoped-admin",
  "crypto",
  "token",
  "audit",
  "deployment",
] as const;
export type ActionGroup = (typeof ACTION_GROUPS)[number];

export interface ActionSpec {
  /**
   * Resource types the action applies to. The first is the one a route-level decision uses; a
   * list action also names the type of the items it filters one by one.
   */
  resources: readonly ResourceType[];
  groups: readonly ActionGroup[];
}

const LISTED: readonly ResourceType[] = ["Environment", "Tenant"];

/** Every action, by the name routes declare (`<area>.<verb>`). */
export const ACTIONS = {
  "sys.seal": { resources: ["System"], groups: ["deployment"] },
  "sys.unseal.cancel": { resources: ["System"], groups: ["deployment"] },
  "sys.metrics.read": { resources: ["System"], groups: ["deployment", "read"] },
  "sys.root.read": { resources: ["System"], groups: ["deployment", "read"] },
  "sys.root.rotate": { resources: ["System"], groups: ["deployment"] },

  "key.create": { resources: ["Key"], groups: ["scoped-admin"] },
  "key.list": { resources: [...LISTED, "Key"], groups: ["scoped-admin", "read"] },
  "key.tree": { resources: [...LISTED, "Key"], groups: ["scoped-admin", "read"] },
  "key.read": { resources: ["Key"], groups: ["scoped-admin", "read"] },
  "key.rotate": { resources: ["Key"], groups: ["scoped-admin"] },
  "key.version.disable": { resources: ["KeyVersion"], groups: ["scoped-admin"] },
  "key.version.enable": { resources: ["KeyVersion"], groups: ["scoped-admin"] },
  "key.version.revoke": { resources: ["KeyVersion"], groups: ["scoped-admin"] },
  "key.min_decryption_version.set": { resources: ["Key"], groups: ["scoped-admin"] },

  "data_key.generate": { resources: ["Key"], groups: ["scoped-admin", "crypto"] },
  "data_key.generate_wrapped": { resources: ["Key"], groups: ["scoped-admin", "crypto"] },
  "data_key.decrypt": { resources: ["Key"], groups: ["scoped-admin", "crypto"] },
  "data_key.rewrap": { resources: ["Key"], groups: ["scoped-admin", "crypto"] },
  "crypto.encrypt": { resources: ["Key"], groups: ["scoped-admin", "crypto"] },
  "crypto.decrypt": { resources: ["Key"], groups: ["scoped-admin", "crypto"] },
  "crypto.rewrap": { resources: ["Key"], groups: ["scoped-admin", "crypto"] },
  "key.sign": { resources: ["Key"], groups: ["scoped-admin", "crypto"] },

  "token.issue": { resources: ["Key"], groups: ["crypto", "token"] },
  "token.introspect": { resources: ["Key"], groups: ["scoped-admin", "token", "read"] },
  "token.revoke": { resources: ["Key"], groups: ["scoped-admin", "token"] },

  "operator_token.create": { resources: ["Principal"], groups: ["scoped-admin"] },
  "operator_token.list": { resources: [...LISTED, "Principal"], groups: ["scoped-admin", "read"] },
  "operator_token.revoke": { resources: ["Principal"], groups: ["scoped-admin"] },

  "service.create": { resources: ["Principal"], groups: ["scoped-admin"] },
  "service.list": { resources: [...LISTED, "Principal"], groups: ["scoped-admin", "read"] },
  "service.read": { resources: ["Principal"], groups: ["scoped-admin", "read"] },
  "service.secret.rotate": { resources: ["Principal"], groups: ["scoped-admin"] },
  "service.secret.revoke": { resources: ["Principal"], groups: ["scoped-admin"] },

  "hierarchy.apply": { resources: LISTED, groups: ["scoped-admin"] },

  // The audit log spans every environment and tenant, so only unscoped principals reach it.
  "audit.read": { resources: ["AuditLog"], groups: ["audit", "read"] },
  "audit.checkpoint": { resources: ["AuditLog"], groups: ["deployment"] },
  "audit.prune": { resources: ["AuditLog"], groups: ["deployment"] },

  "policy.apply": { resources: ["Policy"], groups: ["deployment"] },
  "policy.delete": { resources: ["Policy"], groups: ["deployment"] },
  "policy.list": { resources: ["Policy"], groups: ["deployment", "read"] },
  "policy.read": { resources: ["Policy"], groups: ["deployment", "read"] },
  "policy.explain": { resources: ["Policy"], groups: ["deployment", "read"] },
  "policy.grant.create": { resources: ["Policy"], groups: ["deployment"] },
  "policy.grant.list": { resources: ["Policy"], groups: ["deployment", "read"] },
  "policy.grant.revoke": { resources: ["Policy"], groups: ["deployment"] },
} as const satisfies Record<string, ActionSpec>;

export type ActionName = keyof typeof ACTIONS;

export const ACTION_NAMES = Object.keys(ACTIONS) as ActionName[];

export function isActionName(name: string): name is ActionName {
  return Object.hasOwn(ACTIONS, name);
}

/** The action's specification; undefined for a name the schema does not know. */
export function actionSpec(name: string): ActionSpec | undefined {
  return isActionName(name) ? ACTIONS[name] : undefined;
}

/** The actions an action constraint names: itself, or every member when it is a group. */
export function actionsCoveredBy(id: string): ActionName[] {
  if (isActionName(id)) return [id];
  if ((ACTION_GROUPS as readonly string[]).includes(id)) {
    return ACTION_NAMES.filter((name) => (ACTIONS[name].groups as readonly string[]).includes(id));
  }
  return [];
}
