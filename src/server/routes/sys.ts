import type { FastifyInstance } from "fastify";
import { sql } from "kysely";

import type { RootState } from "../../root/types.ts";
import { emptyBodySchema, withErrors } from "../schemas.ts";
import type { RouteContext } from "./context.ts";

const healthSchema = {
  type: "object",
  required: ["initialized", "sealed", "storage", "root"],
  additionalProperties: false,
  properties: {
    initialized: { type: "boolean" },
    sealed: { type: "boolean" },
    storage: { type: "string", enum: ["ok", "unavailable"] },
    root: { type: "string", enum: ["uninitialized", "sealed", "unsealed", "unavailable"] },
  },
} as const;

const sealStatusSchema = {
  type: "object",
  required: ["initialized", "sealed", "provider", "state", "threshold", "progress", "nonce"],
  additionalProperties: false,
  properties: {
    initialized: { type: "boolean" },
    sealed: { type: "boolean" },
    provider: { type: "string" },
    // `unavailable` means the root (an HSM) does not respond. It is not sealed and needs no unseal.
    state: { type: "string", enum: ["uninitialized", "sealed", "unsealed", "unavailable"] },
    threshold: { type: ["integer", "null"] },
    progress: { type: "integer" },
    nonce: { type: ["string", "null"] },
  },
} as const;

const initBodySchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    shares: { type: "integer", minimum: 2, maximum: 255 },
    threshold: { type: "integer", minimum: 2, maximum: 255 },
  },
} as const;

const initResponseSchema = {
  type: "object",
  required: ["shares", "threshold", "rootToken", "rootTokenId"],
  additionalProperties: false,
  properties: {
    shares: { type: "array", items: { type: "string" } },
    threshold: { type: "integer" },
    rootToken: { type: "string" },
    rootTokenId: { type: "string" },
  },
} as const;

const DEFAULT_SHARES = 5;
const DEFAULT_THRESHOLD = 3;

/** Health, seal status, initialisation, sealing and metrics. */
export function registerSysRoutes(app: FastifyInstance, { deps, audit }: RouteContext): void {
  app.get(
    "/v1/sys/health",
    {
      schema: {
        summary:
          "Readiness: 200 unsealed and ready, 501 not initialised, 503 sealed or a dependency down",
        response: withErrors({ 200: healthSchema, 501: healthSchema, 503: healthSchema }),
      },
      config: {
        action: "sys.health.read",
        resource: "sys",
        auditEvent: null,
        public: true,
        whileSealed: true,
      },
    },
    async (request, reply) => {
      let storage: "ok" | "unavailable" = "ok";
      try {
        await sql`select 1`.execute(deps.storage.db);
      } catch (error) {
        request.log.warn({ err: error }, "storage health check failed");
        storage = "unavailable";
      }
      const root = deps.root.status().state;
      reply.code(healthStatus(storage, root));
      return {
        initialized: root !== "uninitialized",
        sealed: root !== "unsealed",
        storage,
        root,
      };
    },
  );

  app.get(
    "/v1/sys/seal-status",
    {
      schema: {
        summary: "Whether the root is initialised and sealed, and the unseal ceremony in progress",
        response: withErrors({ 200: sealStatusSchema }),
      },
      config: {
        action: "sys.seal_status.read",
        resource: "sys",
        auditEvent: null,
        public: true,
        whileSealed: true,
      },
    },
    (_request, reply) => {
      const status = deps.root.status();
      return reply.send({
        initialized: status.state !== "uninitialized",
        sealed: status.state !== "unsealed",
        provider: status.provider,
        state: status.state,
        threshold: status.ceremony?.threshold ?? status.threshold ?? null,
        progress: status.ceremony?.progress ?? 0,
        nonce: status.ceremony?.nonce ?? null,
      });
    },
  );

  app.post<{ Body: { shares?: number; threshold?: number } }>(
    "/v1/sys/init",
    {
      schema: {
        summary: "Creates the root, its unseal shares and the root token; works once",
        body: initBodySchema,
        response: withErrors({ 200: initResponseSchema }),
      },
      config: {
        action: "sys.init",
        resource: "sys",
        auditEvent: "sys.initialized",
        public: true,
        whileSealed: true,
      },
    },
    async (request) => {
      const shares = request.body.shares ?? DEFAULT_SHARES;
      const threshold = request.body.threshold ?? DEFAULT_THRESHOLD;

      // NOTE: the shares exist only in this response. If creating the root token or writing the
      // audit event fails after the root was stored, they are lost and the deployment must be
      // initialised again on an empty database.
      const result = await deps.root.initialize({ shares, threshold });
      const rootToken = await deps.operators.createRootToken();
      await audit.success(request, {
        credentialId: rootToken.info.id,
        details: { shares, threshold, rootVersion: result.rootVersion },
      });
      return {
        shares: result.shares,
        threshold: result.threshold,
        rootToken: rootToken.token,
        rootTokenId: rootToken.info.id,
      };
    },
  );

  app.post(
    "/v1/sys/seal",
    {
      schema: {
        summary: "Seals the root and zeroes every cached key; always seals, even if auditing fails",
        body: emptyBodySchema,
        response: withErrors({
          200: {
            type: "object",
            required: ["sealed"],
            additionalProperties: false,
            properties: { sealed: { type: "boolean" } },
          },
        }),
      },
      config: { action: "sys.seal", resource: "sys", auditEvent: "sys.sealed", whileSealed: true },
    },
    async (request) => {
      // Sealing is the emergency brake, so it happens even when the event cannot be written;
      // the response then reports AUDIT_UNAVAILABLE.
      let auditFailure: Error | null = null;
      try {
        await audit.success(request);
      } catch (error) {
        auditFailure = error instanceof Error ? error : new Error(String(error));
      }
      deps.root.seal();
      deps.keyTree.clearCache();
      request.log.info({ principal: request.principal.id }, "root sealed");
      if (auditFailure !== null) throw auditFailure;
      return { sealed: true };
    },
  );

  app.get(
    "/v1/sys/metrics",
    {
      schema: {
        summary: "Prometheus metrics in the text exposition format",
        response: withErrors({ 200: { type: "string" } }),
      },
      config: {
        action: "sys.metrics.read",
        resource: "sys",
        auditEvent: null,
        whileSealed: true,
      },
    },
    async (_request, reply) => {
      const text = await deps.metrics.registry.metrics();
      reply.type(deps.metrics.registry.contentType);
      return text;
    },
  );
}

function healthStatus(storage: "ok" | "unavailable", root: RootState): number {
  if (storage === "unavailable") return 503;
  if (root === "uninitialized") return 501;
  return root === "unsealed" ? 200 : 503;
}
