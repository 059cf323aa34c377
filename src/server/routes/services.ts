import type { FastifyInstance, FastifyRequest } from "fastify";

import { formatDuration } from "../../config/index.ts";
import { ArborError, quote } from "../../errors/index.ts";
import { isInScope } from "../../hierarchy/index.ts";
import type { ClientSecretInfo, ServicePrincipalInfo } from "../../tokens/index.ts";
import { durationMs } from "../durations.ts";
import { durationSchema, withErrors } from "../schemas.ts";
import { rfc3339 } from "../views.ts";
import { operatorOf } from "./context.ts";
import type { TokenRouteContext } from "./oauth.ts";

interface CreateServiceBody {
  name: string;
  environment: string;
  tenant?: string | null;
  service: string;
  scopes?: string[];
  audiences: string[];
  maxTokenTtl?: string | number;
}

const segment = { type: "string", pattern: "^[a-z0-9][a-z0-9-]{0,62}$" } as const;
const nullableTimestamp = { type: ["string", "null"], format: "date-time" } as const;

const secretSchema = {
  type: "object",
  required: ["id", "createdAt", "expiresAt", "revokedAt"],
  additionalProperties: false,
  properties: {
    id: { type: "string" },
    createdAt: { type: "string", format: "date-time" },
    expiresAt: nullableTimestamp,
    revokedAt: nullableTimestamp,
  },
} as const;

const principalProperties = {
  id: { type: "string" },
  name: { type: "string" },
  environment: { type: "string" },
  tenant: { type: "string" },
  service: { type: "string" },
  signKeyId: { type: "string" },
  signKeyPath: { type: "string" },
  issuer: { type: "string" },
  scopes: { type: "array", items: { type: "string" } },
  audiences: { type: "array", items: { type: "string" } },
  maxTokenTtl: { type: "string" },
  createdAt: { type: "string", format: "date-time" },
  secrets: { type: "array", items: secretSchema },
} as const;

const principalSchema = {
  type: "object",
  required: Object.keys(principalProperties),
  additionalProperties: false,
  properties: principalProperties,
} as const;

const idParams = {
  type: "object",
  required: ["id"],
  additionalProperties: false,
  properties: { id: { type: "string", minLength: 1, maxLength: 64 } },
} as const;

type ServiceAuditEvent =
  "service.created" | "service.secret_rotated" | "service.secret_revoked" | null;

function config(action: string, auditEvent: ServiceAuditEvent) {
  return { action, resource: "service_principal", auditEvent } as const;
}

/**
 * Service principals: OAuth clients bound to one service's `sign` key. Operators manage them
 * inside their own scope; a principal elsewhere is 404 NOT_FOUND. Client secrets are returned
 * once, when created.
 */
export function registerServiceRoutes(
  app: FastifyInstance,
  { audit, tokens }: TokenRouteContext,
): void {
  const principals = tokens.principals;

  /**
   * Reads a service principal inside the caller's scope and decides the request on it. A
   * principal a policy keeps from the caller is "not found", exactly like one outside its scope.
   */
  async function authorizedPrincipal(request: FastifyRequest, id: string) {
    const info = await principals.get(operatorOf(request.principal), id);
    if (!(await request.decide(principalTarget(info))).allowed) {
      throw new ArborError("NOT_FOUND", `service principal ${quote(id)} not found`, {
        parameter: "id",
        value: id,
      });
    }
    return info;
  }

  app.post<{ Body: CreateServiceBody }>(
    "/v1/services",
    {
      schema: {
        summary: "Creates a service principal and its first client secret (shown once)",
        body: {
          type: "object",
          required: ["name", "environment", "service", "audiences"],
          additionalProperties: false,
          properties: {
            name: { type: "string", minLength: 1, maxLength: 64 },
            environment: segment,
            tenant: { type: ["string", "null"], pattern: "^(-|[a-z0-9][a-z0-9-]{0,62})$" },
            service: segment,
            scopes: { type: "array", maxItems: 64, items: { type: "string" } },
            audiences: { type: "array", maxItems: 16, items: { type: "string" } },
            maxTokenTtl: durationSchema,
          },
        },
        response: withErrors({
          201: {
            type: "object",
            required: [...principalSchema.required, "clientSecret", "clientSecretId"],
            additionalProperties: false,
            properties: {
              ...principalProperties,
              clientSecret: { type: "string" },
              clientSecretId: { type: "string" },
            },
          },
        }),
      },
      config: config("service.create", "service.created"),
    },
    async (request, reply) => {
      const { maxTokenTtl, ...fields } = request.body;
      const actor = operatorOf(request.principal);
      const target = {
        type: "principal",
        id: "new",
        kind: "service",
        environment: fields.environment,
        tenant: fields.tenant ?? "-",
        service: fields.service,
      } as const;
      // Outside the caller's scope, the principal manager rejects the request with its own message.
      const decision = await request.decide(target);
      if (
        !decision.allowed &&
        isInScope({ environment: target.environment, tenant: target.tenant }, actor)
      ) {
        throw new ArborError(
          "FORBIDDEN",
          `this token is not allowed to create service principals for ${quote(`${target.environment}/${target.tenant}/${target.service}`)}`,
        );
      }
      const created = await principals.create(actor, {
        ...fields,
        ...(maxTokenTtl === undefined
          ? {}
          : { maxTokenTtlMs: durationMs(maxTokenTtl, "maxTokenTtl") }),
      });
      await audit.success(request, {
        keyId: created.info.signKeyId,
        credentialId: created.secret.id,
        details: {
          clientId: created.info.id,
          environment: created.info.environment,
          tenant: created.info.tenant,
          service: created.info.service,
        },
      });
      reply.code(201);
      return {
        ...principalView(created.info),
        clientSecret: created.clientSecret,
        clientSecretId: created.secret.id,
      };
    },
  );

  app.get(
    "/v1/services",
    {
      schema: {
        summary: "Lists the service principals in the caller's scope",
        response: withErrors({
          200: {
            type: "object",
            required: ["services"],
            additionalProperties: false,
            properties: { services: { type: "array", items: principalSchema } },
          },
        }),
      },
      config: config("service.list", null),
    },
    async (request) => {
      const list = await principals.list(operatorOf(request.principal));
      const visible = [];
      for (const info of list) {
        if ((await request.decide(principalTarget(info))).allowed) visible.push(info);
      }
      return { services: visible.map(principalView) };
    },
  );

  app.get<{ Params: { id: string } }>(
    "/v1/services/:id",
    {
      schema: {
        summary: "Shows a service principal and its client secrets (never their values)",
        params: idParams,
        response: withErrors({ 200: principalSchema }),
      },
      config: config("service.read", null),
    },
    async (request) => principalView(await authorizedPrincipal(request, request.params.id)),
  );

  app.post<{ Params: { id: string }; Body: { overlap?: string | number } }>(
    "/v1/services/:id/secrets",
    {
      schema: {
        summary:
          "Rotates the client secret: returns a new one (shown once); the old ones keep working for the overlap",
        params: idParams,
        body: {
          type: "object",
          additionalProperties: false,
          properties: { overlap: durationSchema },
        },
        response: withErrors({
          201: {
            type: "object",
            required: [...secretSchema.required, "clientSecret", "previousSecretsExpireAt"],
            additionalProperties: false,
            properties: {
              ...secretSchema.properties,
              clientSecret: { type: "string" },
              previousSecretsExpireAt: { type: "string", format: "date-time" },
            },
          },
        }),
      },
      config: config("service.secret.rotate", "service.secret_rotated"),
    },
    async (request, reply) => {
      audit.note(request, { details: { clientId: request.params.id } });
      await authorizedPrincipal(request, request.params.id);
      const overlap = request.body.overlap;
      const overlapMs = overlap === undefined ? 0 : durationMs(overlap, "overlap");
      const rotated = await principals.rotateSecret(
        operatorOf(request.principal),
        request.params.id,
        overlapMs,
      );
      await audit.success(request, {
        credentialId: rotated.secret.id,
        details: { overlapMs, previousSecretsExpireAt: rotated.previousExpireAt },
      });
      reply.code(201);
      return {
        ...secretView(rotated.secret),
        clientSecret: rotated.clientSecret,
        previousSecretsExpireAt: rfc3339(rotated.previousExpireAt),
      };
    },
  );

  app.delete<{ Params: { id: string; secretId: string } }>(
    "/v1/services/:id/secrets/:secretId",
    {
      schema: {
        summary: "Revokes one client secret at once",
        params: {
          type: "object",
          required: ["id", "secretId"],
          additionalProperties: false,
          properties: {
            id: idParams.properties.id,
            secretId: { type: "string", minLength: 1, maxLength: 64 },
          },
        },
        response: withErrors({ 200: secretSchema }),
      },
      config: config("service.secret.revoke", "service.secret_revoked"),
    },
    async (request) => {
      const { id, secretId } = request.params;
      audit.note(request, { credentialId: secretId, details: { clientId: id } });
      await authorizedPrincipal(request, id);
      const revoked = await principals.revokeSecret(operatorOf(request.principal), id, secretId);
      await audit.success(request);
      return secretView(revoked);
    },
  );
}

function principalTarget(info: ServicePrincipalInfo) {
  return {
    type: "principal",
    id: info.id,
    kind: "service",
    environment: info.environment,
    tenant: info.tenant,
    service: info.service,
  } as const;
}

function principalView(info: ServicePrincipalInfo) {
  return {
    id: info.id,
    name: info.name,
    environment: info.environment,
    tenant: info.tenant,
    service: info.service,
    signKeyId: info.signKeyId,
    signKeyPath: info.signKeyPath,
    issuer: info.issuer,
    scopes: info.scopes,
    audiences: info.audiences,
    maxTokenTtl: formatDuration(info.maxTokenTtlMs),
    createdAt: rfc3339(info.createdAt),
    secrets: info.secrets.map(secretView),
  };
}

function secretView(secret: ClientSecretInfo) {
  return {
    id: secret.id,
    createdAt: rfc3339(secret.createdAt),
    expiresAt: secret.expiresAt === null ? null : rfc3339(secret.expiresAt),
    revokedAt: secret.revokedAt === null ? null : rfc3339(secret.revokedAt),
  };
}
