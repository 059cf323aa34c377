import {
  ACTION_GROUPS,
  ACTION_NAMES,
  ACTIONS,
  PRINCIPAL_TYPES,
  RESOURCE_TYPES,
  type ResourceType,
} from "./actions.ts";

/** The Cedar namespace of every Arbor entity type and action. */
export const NAMESPACE = "Arbor";

/** Value of `env` or `tenant` that stands for every environment or tenant. */
export const ANY = "*";

/**
 * Attributes of each resource type. Every type has `env` and `tenant`, always set, so the guard
 * policies read them on any resource without `has` and cannot be skipped for a missing attribute.
 */
const RESOURCE_SHAPES: Record<ResourceType, string> = {
  Key: "env: String, tenant: String, service: String, kind: String, purpose: String, path: String",
  KeyVersion: "env: String, tenant: String, service: String, key: String, version: Long",
  Environment: "env: String, tenant: String",
  Tenant: "env: String, tenant: String",
  Principal: "env: String, tenant: String, service: String, kind: String",
  Policy: "env: String, tenant: String",
  AuditLog: "env: String, tenant: String",
  System: "env: String, tenant: String",
};

/**
 * Builds the Cedar schema (Cedar schema syntax). Principals share one shape: `env` and `tenant`
 * (`*` for every one, `-` for an environment-level service), `service` (`-` for operators),
 * `readOnly`, `root`, and `breakGlass`, the break-glass grant that covers the resource of the
 * request (`until` 0 when there is none). The context carries `now` in milliseconds.
 */
export function buildSchemaText(): string {
  const principals = PRINCIPAL_TYPES.join(", ");
  const lines = [
    `namespace ${NAMESPACE} {`,
    "  type BreakGlass = { grant: String, until: Long, env: String, tenant: String };",
    "  type RequestContext = { now: Long };",
    "  entity Role;",
    `  entity ${principals} in [Role] = {`,
    "    env: String, tenant: String, service: String,",
    "    readOnly: Bool, root: Bool, breakGlass: BreakGlass",
    "  };",
    ...RESOURCE_TYPES.map((type) => `  entity ${type} = { ${RESOURCE_SHAPES[type]} };`),
    ...ACTION_GROUPS.map((group) => `  action "${group}";`),
    ...ACTION_NAMES.map((name) => {
      const spec = ACTIONS[name];
      const groups = spec.groups.map((group) => `"${group}"`).join(", ");
      return (
        `  action "${name}" in [${groups}] appliesTo { principal: [${principals}], ` +
        `resource: [${spec.resources.join(", ")}], context: RequestContext };`
      );
    }),
    "}",
  ];
  return `${lines.join("\n")}\n`;
}

export const SCHEMA_TEXT = buildSchemaText();
