import type { FastifyInstance } from "fastify";

import { ArborError, quote } from "../../errors/index.ts";
import { isWithinScope, resolveScope, validateRequestedScope } from "../../operators/scope.ts";
import { durationMs } from "../durations.ts";
import { durationSchema, withErrors } from "../schemas.ts";
import { operatorTokenView } from "../views.ts";
import { operatorOf, type RouteContext } from "./context.ts";

interface CreateTokenBody {
  name: string;
  ttl?: string | number;
  environment?: string | null;
  tenant?: string | null;
  readOnly?: boolean;
}

const nullableSegment = {
  type: ["string", "null"],
  pattern: "^[a-z0-9][a-z0-9-]{0,62}$",
} as const;

const tokenRef = { $ref: "ArborOperatorToken#" } as const;

/** Operator tokens: create (the secret is shown once), list, revoke. */
export function registerOperatorTokenRoutes(
  app: FastifyInstance,
  { deps, audit }: RouteContext,
): void {
  app.post<{ Body: CreateTokenBody }>(
    "/v1/operator/tokens",
    {
      schema: {
        summary: "Creates an operator token with no more reach than the caller's; shown once",
        body: {
          type: "object",
          required: ["name"],
          additionalProperties: false,
          properties: {
            name: { type: "string", minLength: 1, maxLength: 64 },
            ttl: durationSchema,
            environment: nullableSegment,
            tenant: nullableSegment,
            readOnly: { type: "boolean" },
          },
        },
        response: withErrors({
          201: {
            type: "object",
            required: ["id", "token", "name", "readOnly", "root", "createdAt"],
            additionalProperties: false,
            properties: {
              ...operatorTokenSchemaProperties(),
              token: { type: "string" },
            },
          },
        }),
      },
      config: {
        action: "operator_token.create",
        resource: "operator_token",
        auditEvent: "operator_token.created",
      },
    },
    async (request, reply) => {
      const { name, ttl, environment, tenant, readOnly } = request.body;
      const creator = operatorOf(request.principal);
      const scope = resolveScope(
        creator,
        validateRequestedScope({ name, environment, tenant, readOnly }),
      );
      // Outside the creator's scope, the token service rejects the request with its own message.
      const decision = await request.decide({
        type: "principal",
        id: "new",
        kind: "operator",
        environment: scope.environment,
        tenant: scope.tenant,
        service: null,
      });
      if (!decision.allowed && isWithinScope(creator, scope)) {
        throw new ArborError(
          "FORBIDDEN",
          `this token is not allowed to create operator tokens for ${quote(`${scope.environment ?? "*"}/${scope.tenant ?? "*"}`)}`,
        );
      }
      // Omitted fields stay omitted: the token service fills them from the creator's token.
      const created = await deps.operators.create(creator, {
        name,
        ttlMs: ttl === undefined ? undefined : durationMs(ttl, "ttl"),
        environment,
        tenant,
        readOnly,
      });
      await audit.success(request, {
        credentialId: created.info.id,
        details: {
          environment: created.info.environment,
          tenant: created.info.tenant,
          readOnly: created.info.readOnly,
          expiresAt: created.info.expiresAt,
        },
      });
      reply.code(201);
      return { ...operatorTokenView(created.info), token: created.token };
    },
  );

  app.get(
    "/v1/operator/tokens",
    {
      schema: {
        summary: "Lists the operator tokens the caller may see",
        response: withErrors({
          200: {
            type: "object",
            required: ["tokens"],
            properties: { tokens: { type: "array", items: tokenRef } },
          },
        }),
      },
      config: { action: "operator_token.list", resource: "operator_token", auditEvent: null },
    },
    async (request) => {
      const tokens = await deps.operators.list(operatorOf(request.principal));
      const visible = [];
      for (const token of tokens) {
        const target = { type: "principal", kind: "operator", service: null, ...token } as const;
        if ((await request.decide(target)).allowed) visible.push(token);
      }
      return { tokens: visible.map(operatorTokenView) };
    },
  );

  app.delete<{ Params: { id: string } }>(
    "/v1/operator/tokens/:id",
    {
      schema: {
        summary: "Revokes an operator token",
        params: {
          type: "object",
          required: ["id"],
          additionalProperties: false,
          properties: { id: { type: "string", minLength: 1, maxLength: 64 } },
        },
        response: withErrors({
          200: {
            type: "object",
            required: ["id", "revokedAt"],
            additionalProperties: false,
            properties: { id: { type: "string" }, revokedAt: { type: "string" } },
          },
        }),
      },
      config: {
        action: "operator_token.revoke",
        resource: "operator_token",
        auditEvent: "operator_token.revoked",
      },
    },
    async (request) => {
      audit.note(request, { credentialId: request.params.id });
      const actor = operatorOf(request.principal);
      // A token a policy keeps from the caller is "not found", like one outside its scope; any
      // other case is left to the token service, which returns the same error for those.
      const row = await deps.storage.operatorTokens.findById(request.params.id);
      if (row !== undefined && isWithinScope(actor, row)) {
        const decision = await request.decide({
          type: "principal",
          id: row.id,
          kind: "operator",
          environment: row.environment,
          tenant: row.tenant,
          service: null,
        });
        if (!decision.allowed) {
          throw new ArborError("NOT_FOUND", `operator token ${request.params.id} not found`, {
            parameter: "id",
            value: request.params.id,
          });
        }
      }
      const revoked = await deps.operators.revoke(actor, request.params.id);
      await audit.success(request);
      return operatorTokenView(revoked);
    },
  );
}

function operatorTokenSchemaProperties() {
  return {
    id: { type: "string" },
    name: { type: "string" },
    environment: { type: ["string", "null"] },
    tenant: { type: ["string", "null"] },
    readOnly: { type: "boolean" },
    root: { type: "boolean" },
    createdAt: { type: "string", format: "date-time" },
    expiresAt: { type: ["string", "null"], format: "date-time" },
    revokedAt: { type: ["string", "null"], format: "date-time" },
  };
}
