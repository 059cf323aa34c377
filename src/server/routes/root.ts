import type { FastifyInstance } from "fastify";

import { pendingRootRewrap, rewrapUnderNewRoot, rotateRoot } from "../../hierarchy/index.ts";
import type { Storage } from "../../storage/index.ts";
import { ArborError } from "../../errors/index.ts";
import { withErrors } from "../schemas.ts";
import type { RouteContext } from "./context.ts";

const rotateResponseSchema = {
  type: "object",
  required: ["rootVersion", "rotated", "rewrapped", "skipped", "disabledVersions"],
  additionalProperties: false,
  properties: {
    rootVersion: { type: "integer" },
    rotated: { type: "boolean" },
    rewrapped: { type: "integer" },
    skipped: { type: "integer" },
    disabledVersions: { type: "array", items: { type: "integer" } },
  },
} as const;

/**
 * Root rotation: a new root version, then every environment master version re-wrapped under it,
 * then the old root versions disabled (never deleted). A rotation interrupted before every master
 * moved is finished by the next call instead of rotating again.
 */
export function registerRootRoutes(
  app: FastifyInstance,
  { deps, audit }: RouteContext,
  storage: Storage,
): void {
  // Progress of the rotation running in this process, for `GET /v1/sys/root/rotation`.
  let progress = { running: false, done: 0, total: 0 };

  app.get(
    "/v1/sys/root/rotation",
    {
      schema: {
        summary: "Progress of the root rotation running on this server, for progress bars",
        response: withErrors({
          200: {
            type: "object",
            required: ["running", "done", "total"],
            additionalProperties: false,
            properties: {
              running: { type: "boolean" },
              done: { type: "integer" },
              total: { type: "integer" },
            },
          },
        }),
      },
      config: { action: "sys.root.read", resource: "sys", auditEvent: null },
    },
    () => progress,
  );

  app.post(
    "/v1/sys/root/rotate",
    {
      schema: {
        summary: "Rotates the root key and re-wraps every environment master under the new version",
        body: { type: "object", additionalProperties: false, properties: {} },
        response: withErrors({ 200: rotateResponseSchema }),
      },
      config: { action: "sys.root.rotate", resource: "sys", auditEvent: "sys.root_rotated" },
    },
    async (request) => {
      if (progress.running) {
        throw new ArborError(
          "CONCURRENT_UPDATE",
          "a root rotation is already running on this server; follow it with GET /v1/sys/root/rotation",
        );
      }
      progress = { running: true, done: 0, total: 0 };
      const options = {
        storage,
        root: deps.root,
        clock: deps.clock,
        logger: deps.logger,
        onProgress: (step: { done: number; total: number }) => {
          progress = { running: true, done: step.done, total: step.total };
        },
      };
      let result;
      try {
        const unfinished = await pendingRootRewrap(storage, deps.root);
        result =
          unfinished > 0
            ? { ...(await rewrapUnderNewRoot(options)), rotated: false }
            : { ...(await rotateRoot(options)), rotated: true };
      } finally {
        progress = { ...progress, running: false };
      }
      // A re-wrap changes the root version at the top of every chain.
      deps.keyTree.clearChainCache();

      const answer = {
        rootVersion: result.rootVersion,
        rotated: result.rotated,
        rewrapped: result.rewrapped,
        skipped: result.skipped,
        disabledVersions: result.disabledVersions,
      };
      await audit.success(request, {
        details: {
          rootVersion: answer.rootVersion,
          rotated: answer.rotated,
          rewrapped: answer.rewrapped,
          skipped: answer.skipped,
        },
      });
      return answer;
    },
  );
}
