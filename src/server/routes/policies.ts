import type { FastifyInstance } from "fastify";

import type { PolicyAdministration, PolicyGrant, PolicyVersionInfo } from "../../policy/index.ts";
import { durationMs } from "../durations.ts";
import { durationSchema, withErrors } from "../schemas.ts";
import { rfc3339 } from "../views.ts";
import type { RouteContext } from "./context.ts";

const nameSchema = { type: "string", pattern: "^[a-z0-9][a-z0-9_.-]{0,63}$" } as const;
const nullableString = { type: ["string", "null"] } as const;
const nullableTimestamp = { type: ["string", "null"], format: "date-time" } as const;

const versionProperties = {
  name: { type: "string" },
  version: { type: "integer" },
  sha256: { type: "string" },
  deleted: { type: "boolean" },
  createdAt: { type: "string", format: "date-time" },
  createdBy: { type: "string" },
} as const;

const versionSchema = {
  type: "object",
  required: Object.keys(versionProperties),
  additionalProperties: false,
  properties: versionProperties,
} as const;

const grantProperties = {
  id: { type: "string" },
  principal: { type: "string" },
  kind: { type: "string", enum: ["role", "break_glass"] },
  role: nullableString,
  environment: nullableString,
  tenant: nullableString,
  reason: { type: "string" },
  createdAt: { type: "string", format: "date-time" },
  createdBy: { type: "string" },
  expiresAt: nullableTimestamp,
  revokedAt: nullableTimestamp,
} as const;

const grantSchema = {
  type: "object",
  required: Object.keys(grantProperties),
  additionalProperties: false,
  properties: grantProperties,
} as const;

const originSchema = {
  type: "object",
  required: ["id", "source", "name", "version", "effect", "reason"],
  additionalProperties: false,
  properties: {
    id: { type: "string" },
    source: { type: "string", enum: ["builtin", "stored"] },
    name: { type: "string" },
    version: { type: ["integer", "null"] },
    effect: { type: "string", enum: ["permit", "forbid"] },
    reason: nullableString,
    text: { type: "string" },
  },
} as const;

interface GrantBody {
  principal: string;
  role?: string;
  breakGlass?: { environment: string; tenant?: string };
  ttl?: string | number;
  reason: string;
}

/** Query parameters arrive as strings; the schema checks their form. */
interface ExplainQuery {
  principal: string;
  action: string;
  workload?: "true" | "false";
  key?: string;
  version?: string;
  target?: string;
}

/**
 * Stored Cedar policies (versioned documents), grants (roles and break-glass) and explanations.
 * Every change is audited as `policy.changed` in its own transaction and takes effect at once.
 */
export function registerPolicyRoutes(
  app: FastifyInstance,
  { audit }: RouteContext,
  policies: PolicyAdministration,
): void {
  const { store } = policies;

  app.get(
    "/v1/policies",
    {
      schema: {
        summary: "Lists the stored policy documents in effect, at their current versions",
        response: withErrors({
          200: {
            type: "object",
            required: ["policies"],
            additionalProperties: false,
            properties: { policies: { type: "array", items: versionSchema } },
          },
        }),
      },
      config: { action: "policy.list", resource: "policy", auditEvent: null },
    },
    async () => ({ policies: (await store.current()).map(versionView) }),
  );

  app.get<{ Params: { name: string } }>(
    "/v1/policies/:name",
    {
      schema: {
        summary: "Shows a policy document's current text and every earlier version",
        params: {
          type: "object",
          required: ["name"],
          additionalProperties: false,
          properties: { name: nameSchema },
        },
        response: withErrors({
          200: {
            type: "object",
            required: [...versionSchema.required, "text", "history"],
            additionalProperties: false,
            properties: {
              ...versionProperties,
              text: { type: "string" },
              history: { type: "array", items: versionSchema },
            },
          },
        }),
      },
      config: { action: "policy.read", resource: "policy", auditEvent: null },
    },
    async (request) => {
      const history = await store.history(request.params.name);
      const latest = history.at(-1)!;
      return { ...versionView(latest), text: latest.text, history: history.map(versionView) };
    },
  );

  app.put<{ Params: { name: string }; Body: { policy: string; dryRun?: boolean } }>(
    "/v1/policies/:name",
    {
      schema: {
        summary:
          "Validates a Cedar policy document and stores it as the next version; in effect at once",
        params: {
          type: "object",
          required: ["name"],
          additionalProperties: false,
          properties: { name: nameSchema },
        },
        body: {
          type: "object",
          required: ["policy"],
          additionalProperties: false,
          properties: {
            policy: { type: "string", minLength: 1 },
            dryRun: { type: "boolean" },
          },
        },
        response: withErrors({
          200: {
            type: "object",
            required: [...versionSchema.required, "changed", "dryRun"],
            additionalProperties: false,
            properties: {
              ...versionProperties,
              changed: { type: "boolean" },
              dryRun: { type: "boolean" },
            },
          },
        }),
      },
      config: { action: "policy.apply", resource: "policy", auditEvent: "policy.changed" },
    },
    async (request) => {
      const { name } = request.params;
      audit.note(request, { details: { name } });
      const outcome = await store.apply(request.principal, name, request.body.policy, {
        dryRun: request.body.dryRun === true,
      });
      // A change's record was written in its transaction, and `success` then only settles the
      // request. A dry run or an unchanged document still leaves a record of the request.
      await audit.success(request, {
        details: { changed: outcome.changed, dryRun: outcome.dryRun },
      });
      return { ...versionView(outcome.policy), changed: outcome.changed, dryRun: outcome.dryRun };
    },
  );

  app.delete<{ Params: { name: string } }>(
    "/v1/policies/:name",
    {
      schema: {
        summary: "Deletes a policy document by storing a deleted version; its history stays",
        params: {
          type: "object",
          required: ["name"],
          additionalProperties: false,
          properties: { name: nameSchema },
        },
        response: withErrors({ 200: versionSchema }),
      },
      config: { action: "policy.delete", resource: "policy", auditEvent: "policy.changed" },
    },
    async (request) => {
      audit.note(request, { details: { name: request.params.name } });
      const deleted = await store.remove(request.principal, request.params.name);
      await audit.success(request);
      return versionView(deleted);
    },
  );

  app.get<{ Querystring: ExplainQuery }>(
    "/v1/explain",
    {
      schema: {
        summary:
          "Decides a described request against the policies in effect, without acting, and says which policies decided it",
        querystring: {
          type: "object",
          required: ["principal", "action"],
          additionalProperties: false,
          properties: {
            principal: { type: "string", minLength: 1, maxLength: 64 },
            action: { type: "string", minLength: 1, maxLength: 64 },
            workload: { type: "string", enum: ["true", "false"] },
            key: { type: "string", minLength: 1, maxLength: 256 },
            version: { type: "string", pattern: "^[1-9][0-9]{0,8}$" },
            target: { type: "string", minLength: 1, maxLength: 64 },
          },
        },
        response: withErrors({
          200: {
            type: "object",
            required: ["decision", "summary", "policies", "errors", "entities"],
            additionalProperties: false,
            properties: {
              decision: { type: "string", enum: ["allow", "deny"] },
              summary: { type: "string" },
              policies: { type: "array", items: originSchema },
              errors: { type: "array", items: { type: "string" } },
              entities: { type: "array", items: { type: "object", additionalProperties: true } },
            },
          },
        }),
      },
      config: { action: "policy.explain", resource: "policy", auditEvent: null },
    },
    async (request) => {
      const { workload, version, ...rest } = request.query;
      const explanation = await policies.explain({
        ...rest,
        workload: workload === "true",
        ...(version === undefined ? {} : { version: Number(version) }),
      });
      return {
        decision: explanation.allowed ? "allow" : "deny",
        summary: explanation.summary,
        policies: explanation.determining,
        errors: [...explanation.errors],
        entities: explanation.entities,
      };
    },
  );

  registerGrantRoutes(app, { audit }, policies);
}

function registerGrantRoutes(
  app: FastifyInstance,
  { audit }: Pick<RouteContext, "audit">,
  { store }: PolicyAdministration,
): void {
  app.post<{ Body: GrantBody }>(
    "/v1/grants",
    {
      schema: {
        summary:
          "Grants a principal a role, or break-glass access to one environment (and tenant) until an expiry",
        body: {
          type: "object",
          required: ["principal", "reason"],
          additionalProperties: false,
          properties: {
            principal: { type: "string", minLength: 1, maxLength: 64 },
            role: { type: "string", minLength: 1, maxLength: 63 },
            breakGlass: {
              type: "object",
              required: ["environment"],
              additionalProperties: false,
              properties: {
                environment: { type: "string", minLength: 1, maxLength: 63 },
                tenant: { type: "string", minLength: 1, maxLength: 63 },
              },
            },
            ttl: durationSchema,
            reason: { type: "string", minLength: 1, maxLength: 256 },
          },
        },
        response: withErrors({ 201: grantSchema }),
      },
      config: { action: "policy.grant.create", resource: "policy", auditEvent: "policy.changed" },
    },
    async (request, reply) => {
      const { principal, role, breakGlass, ttl, reason } = request.body;
      audit.note(request, { details: { principal } });
      const grant = await store.createGrant(request.principal, {
        principalId: principal,
        reason,
        ...(role === undefined ? {} : { role }),
        ...(breakGlass === undefined ? {} : { breakGlass }),
        ...(ttl === undefined ? {} : { ttlMs: durationMs(ttl, "ttl") }),
      });
      await audit.success(request, { credentialId: grant.id });
      reply.code(201);
      return grantView(grant);
    },
  );

  app.get(
    "/v1/grants",
    {
      schema: {
        summary: "Lists every grant, including expired and revoked ones",
        response: withErrors({
          200: {
            type: "object",
            required: ["grants"],
            additionalProperties: false,
            properties: { grants: { type: "array", items: grantSchema } },
          },
        }),
      },
      config: { action: "policy.grant.list", resource: "policy", auditEvent: null },
    },
    async () => ({ grants: (await store.listGrants()).map(grantView) }),
  );

  app.delete<{ Params: { id: string } }>(
    "/v1/grants/:id",
    {
      schema: {
        summary: "Revokes a grant at once",
        params: {
          type: "object",
          required: ["id"],
          additionalProperties: false,
          properties: { id: { type: "string", minLength: 1, maxLength: 64 } },
        },
        response: withErrors({ 200: grantSchema }),
      },
      config: { action: "policy.grant.revoke", resource: "policy", auditEvent: "policy.changed" },
    },
    async (request) => {
      audit.note(request, { credentialId: request.params.id });
      const grant = await store.revokeGrant(request.principal, request.params.id);
      await audit.success(request);
      return grantView(grant);
    },
  );
}

function versionView(info: PolicyVersionInfo) {
  return {
    name: info.name,
    version: info.version,
    sha256: info.sha256,
    deleted: info.deleted,
    createdAt: rfc3339(info.createdAt),
    createdBy: info.createdBy,
  };
}

function grantView(grant: PolicyGrant) {
  return {
    id: grant.id,
    principal: grant.principalId,
    kind: grant.kind,
    role: grant.role,
    environment: grant.environment,
    tenant: grant.tenant,
    reason: grant.reason,
    createdAt: rfc3339(grant.createdAt),
    createdBy: grant.createdBy,
    expiresAt: grant.expiresAt === null ? null : rfc3339(grant.expiresAt),
    revokedAt: grant.revokedAt === null ? null : rfc3339(grant.revokedAt),
  };
}
