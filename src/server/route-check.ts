import type { FastifyInstance, RouteOptions } from "fastify";

import { routeMeta } from "./route-config.ts";

const BODY_METHODS: ReadonlySet<string> = new Set(["POST", "PUT", "PATCH"]);

interface ObjectSchema {
  additionalProperties?: unknown;
}

/**
 * Lists what a `/v1` route fails to declare: its metadata (action, resource, audit event), a
 * response schema, a params schema when the URL has parameters, and for POST, PUT and PATCH a
 * body schema that rejects unknown fields. Routes outside `/v1` are not checked.
 */
export function routeDeclarationProblems(
  route: Pick<RouteOptions, "method" | "url" | "config" | "schema">,
): string[] {
  if (!route.url.startsWith("/v1/")) return [];

  const problems: string[] = [];
  if (routeMeta(route.config ?? {}) === undefined) {
    problems.push("config lacks action, resource or auditEvent");
  }
  const schema = route.schema;
  if (schema?.response === undefined) problems.push("no response schema");
  if (route.url.includes("/:") && schema?.params === undefined) problems.push("no params schema");

  const methods = [route.method].flat();
  if (methods.some((method) => BODY_METHODS.has(method))) {
    const body = schema?.body as ObjectSchema | undefined;
    if (body === undefined) problems.push("no body schema");
    else if (body.additionalProperties !== false) {
      problems.push("the body schema does not set additionalProperties: false");
    }
  }
  return problems;
}

/** Makes registering an incompletely declared `/v1` route throw, so such an app never starts. */
export function enforceRouteDeclarations(app: FastifyInstance): void {
  app.addHook("onRoute", (route) => {
    const problems = routeDeclarationProblems(route);
    if (problems.length > 0) {
      const methods = [route.method].flat().join(",");
      throw new Error(
        `route ${methods} ${route.url} is incompletely declared: ${problems.join("; ")}`,
      );
    }
  });
}
