import swagger from "@fastify/swagger";
import type { FastifyInstance } from "fastify";

import { routeMeta } from "./route-config.ts";
import { withErrors } from "./schemas.ts";

/**
 * Registers the OpenAPI generator. It must run before the routes are added, because it collects
 * them as they are registered. Each operation carries the route's metadata as `x-arbor-action`,
 * `x-arbor-resource` and `x-arbor-audit-event`; public routes are marked as needing no credential.
 */
export async function registerOpenApi(
  app: FastifyInstance,
  externalAddress: string,
): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "Arbor",
        version: "1",
        description:
          "Key hierarchy service: a sealed or HSM root, master and service keys, data keys and envelope encryption.",
      },
      servers: [{ url: externalAddress }],
      components: {
        securitySchemes: { operatorToken: { type: "http", scheme: "bearer" } },
      },
      security: [{ operatorToken: [] }],
    },
    // Shared schemas keep their `$id` as their component name instead of `def-<n>`.
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, index) =>
        typeof json.$id === "string" ? json.$id : `def-${index}`,
    },
    transform: ({ schema, url, route }) => {
      const meta = routeMeta(route.config ?? {});
      if (meta === undefined) return { schema, url };
      return {
        schema: {
          ...schema,
          "x-arbor-action": meta.action,
          "x-arbor-resource": meta.resource,
          "x-arbor-audit-event": meta.auditEvent,
          ...(meta.public === true ? { security: [] } : {}),
        },
        url,
      };
    },
  });
}

/** Serves the OpenAPI document at `GET /v1/openapi.json`; public and available while sealed. */
export function registerOpenApiRoute(app: FastifyInstance): void {
  app.get(
    "/v1/openapi.json",
    {
      schema: {
        summary: "This API's OpenAPI 3.1 document",
        response: withErrors({ 200: { type: "object", additionalProperties: true } }),
      },
      config: {
        action: "api_document.read",
        resource: "api_document",
        auditEvent: null,
        public: true,
        whileSealed: true,
      },
    },
    (_request, reply) => reply.send(app.swagger()),
  );
}
