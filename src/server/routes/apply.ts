import type { FastifyInstance } from "fastify";

import { ArborError } from "../../errors/index.ts";
import { withErrors } from "../schemas.ts";
import { operatorOf, type RouteContext } from "./context.ts";

const looseObject = { type: "object", additionalProperties: true } as const;

/** `arbor apply`: brings the tree in line with a hierarchy file, or plans it with `dryRun`. */
export function registerApplyRoute(app: FastifyInstance, { deps, audit }: RouteContext): void {
  app.post<{ Body: { document: Record<string, unknown>; dryRun?: boolean } }>(
    "/v1/apply",
    {
      schema: {
        summary: "Applies a hierarchy file (parsed YAML); never revokes, reports drift instead",
        body: {
          type: "object",
          required: ["document"],
          additionalProperties: false,
          properties: {
            // The hierarchy file has its own validation in the apply code.
            document: looseObject,
            dryRun: { type: "boolean" },
          },
        },
        response: withErrors({
          200: {
            type: "object",
            required: ["plan", "drift", "applied"],
            additionalProperties: false,
            properties: {
              plan: { type: "array", items: looseObject },
              drift: { type: "array", items: looseObject },
              applied: { type: "boolean" },
              created: { type: "array", items: { type: "string" } },
              unchanged: { type: "integer" },
            },
          },
        }),
      },
      config: { action: "hierarchy.apply", resource: "hierarchy", auditEvent: "hierarchy.applied" },
    },
    async (request) => {
      const applyHierarchy = deps.applyHierarchy;
      if (applyHierarchy === undefined) {
        throw new ArborError(
          "NOT_IMPLEMENTED",
          "this server cannot apply hierarchy files yet; create keys with POST /v1/keys",
        );
      }

      const dryRun = request.body.dryRun ?? false;
      const result = await applyHierarchy(
        request.body.document,
        dryRun,
        operatorOf(request.principal),
      );
      await audit.success(request, {
        details: {
          dryRun,
          applied: result.applied,
          planned: result.plan.length,
          created: result.created?.length ?? 0,
        },
      });
      return result;
    },
  );
}
