import type { FastifyInstance } from "fastify";

import { zeroize } from "../../crypto/index.ts";
import { ArborError } from "../../errors/index.ts";
import { decodeUnsealShare } from "../../root/index.ts";
import { emptyBodySchema, withErrors } from "../schemas.ts";
import type { RouteContext } from "./context.ts";

const unsealBodySchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    nonce: { type: "string", minLength: 1, maxLength: 128 },
    share: { type: "string", minLength: 1, maxLength: 1024 },
    // The user PIN of the HSM token, for a PKCS#11 root.
    pin: { type: "string", minLength: 1, maxLength: 256 },
  },
} as const;

const unsealResponseSchema = {
  type: "object",
  required: ["sealed", "threshold", "progress", "nonce"],
  additionalProperties: false,
  properties: {
    sealed: { type: "boolean" },
    threshold: { type: "integer" },
    progress: { type: "integer" },
    nonce: { type: "string" },
  },
} as const;

/** Registers the unseal ceremony routes: start it, submit shares, cancel it. */
export function registerUnsealRoutes(app: FastifyInstance, { deps, audit }: RouteContext): void {
  app.post<{ Body: { nonce?: string; share?: string; pin?: string } }>(
    "/v1/sys/unseal",
    {
      schema: {
        summary:
          "Without a share, starts the unseal ceremony or returns the one in progress; with the ceremony's nonce and a share, submits the share",
        body: unsealBodySchema,
        response: withErrors({ 200: unsealResponseSchema }),
      },
      config: {
        action: "sys.unseal",
        resource: "sys",
        auditEvent: "sys.unseal_attempted",
        public: true,
        whileSealed: true,
        rateLimit: {
          max: deps.limits.unsealAttemptsPerMinute,
          timeWindow: 60_000,
        },
      },
    },
    async (request) => {
      const { nonce, share, pin } = request.body;
      const hsm = deps.root.status().provider === "pkcs11";
      if (hsm && share !== undefined) {
        throw new ArborError(
          "INVALID_ARGUMENT",
          'this Arbor keeps its root in an HSM: send the token\'s PIN in "pin", not a share',
          { parameter: "share" },
        );
      }
      if (!hsm && pin !== undefined) {
        throw new ArborError(
          "INVALID_ARGUMENT",
          'this Arbor has a sealed software root: send an unseal share in "share", not a PIN',
          { parameter: "pin" },
        );
      }
      const submitted = hsm ? pin : share;

      if (submitted === undefined) {
        if (nonce !== undefined) {
          const field = hsm ? "pin" : "share";
          throw new ArborError(
            "INVALID_ARGUMENT",
            `missing required field "${field}": send the ceremony's nonce together with the ${hsm ? "PIN" : "unseal share"}, or neither to start a ceremony`,
            { parameter: field },
          );
        }
        const ceremony = deps.root.beginUnseal();
        await audit.success(request, {
          details: { submitted: false, progress: ceremony.progress, threshold: ceremony.threshold },
        });
        return {
          sealed: true,
          threshold: ceremony.threshold,
          progress: ceremony.progress,
          nonce: ceremony.nonce,
        };
      }

      if (nonce === undefined) {
        throw new ArborError(
          "INVALID_ARGUMENT",
          'missing required field "nonce": send the nonce of the ceremony in progress with each share (see GET /v1/sys/seal-status)',
          { parameter: "nonce" },
        );
      }
      const secret = hsm
        ? new Uint8Array(Buffer.from(submitted, "utf8"))
        : decodeUnsealShare(submitted);
      let progress;
      try {
        progress = await deps.root.submit(nonce, secret);
      } finally {
        zeroize(secret);
      }

      const details = {
        submitted: true,
        progress: progress.progress,
        threshold: progress.threshold,
        unsealed: progress.unsealed,
      };
      await audit.success(request, { details });
      if (progress.unsealed) {
        request.log.info("root unsealed");
        await audit.extra(request, "sys.unsealed", { details });
      }
      return {
        sealed: !progress.unsealed,
        threshold: progress.threshold,
        progress: progress.progress,
        nonce: progress.nonce,
      };
    },
  );

  app.post(
    "/v1/sys/unseal/cancel",
    {
      schema: {
        summary: "Cancels the unseal ceremony in progress and zeroes its submitted shares",
        body: emptyBodySchema,
        response: withErrors({
          200: {
            type: "object",
            required: ["sealed", "progress"],
            additionalProperties: false,
            properties: { sealed: { type: "boolean" }, progress: { type: "integer" } },
          },
        }),
      },
      config: {
        action: "sys.unseal.cancel",
        resource: "sys",
        auditEvent: "sys.unseal_cancelled",
        whileSealed: true,
      },
    },
    async (request) => {
      // The event is written first: a control operation that cannot be audited is not carried out.
      await audit.success(request);
      deps.root.cancelUnseal();
      return { sealed: deps.root.status().state !== "unsealed", progress: 0 };
    },
  );
}
