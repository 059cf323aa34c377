import type { FastifyInstance } from "fastify";

import { ArborError, isArborError } from "../../errors/index.ts";
import type { OperatorAuthenticationFailure, OperatorTokenService } from "../../operators/types.ts";
import { routeMeta } from "../route-config.ts";
import type { AuditRecorder } from "./audit.ts";

// RFC 6750 section 2.1: the scheme is case-insensitive; the token is a run of visible characters.
const BEARER_PATTERN = /^Bearer +([\x21-\x7e]+) *$/i;

/**
 * Sets `request.principal` on every routed request: anonymous for public routes, otherwise the
 * operator behind the `Authorization: Bearer` token. A missing or rejected token gives 401
 * UNAUTHENTICATED and an `auth.failed` event, which never contains the token.
 */
export function registerAuthentication(
  app: FastifyInstance,
  operators: Pick<OperatorTokenService, "authenticate">,
  audit: AuditRecorder,
): void {
  app.addHook("onRequest", async (request) => {
    const meta = routeMeta(request.routeOptions.config);
    if (meta === undefined || meta.public === true) return;

    const header = request.headers.authorization;
    const match = header === undefined ? null : BEARER_PATTERN.exec(header);
    if (match === null) {
      await audit.rejection(request, "auth.failed", "UNAUTHENTICATED", {
        reason: header === undefined ? "missing token" : "malformed authorization header",
      });
      throw new ArborError(
        "UNAUTHENTICATED",
        "missing bearer token: send the header Authorization: Bearer <operator token>",
      );
    }

    try {
      request.principal = await operators.authenticate(match[1]!);
    } catch (error) {
      // Anything else (a storage outage, a bug) is not the caller's fault and passes through.
      if (!isArborError(error, "UNAUTHENTICATED") && !isArborError(error, "INVALID_SECRET")) {
        throw error;
      }
      await audit.rejection(request, "auth.failed", "UNAUTHENTICATED", failureDetails(error));
      throw new ArborError(
        "UNAUTHENTICATED",
        "invalid bearer token: the token is unknown, expired, revoked or mistyped",
      );
    }
  });
}

/**
 * Returns the reason and matched token id that the token service attaches as the error's cause,
 * for the audit event. Neither is secret; any other cause gives a generic reason.
 */
function failureDetails(error: ArborError): Record<string, string | null> {
  const cause = error.cause as Partial<OperatorAuthenticationFailure> | undefined;
  if (typeof cause?.reason !== "string") return { reason: "invalid token" };
  return { reason: cause.reason, tokenId: cause.tokenId ?? null };
}
