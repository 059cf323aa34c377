import type { FastifyInstance, FastifyRequest } from "fastify";

import { ArborError, isArborError } from "../../errors/index.ts";
import type { OperatorAuthenticationFailure, OperatorTokenService } from "../../operators/types.ts";
import { requestPrincipal, type TokenService } from "../../tokens/index.ts";
import { routeMeta, type ArborRouteConfig, type RouteResource } from "../route-config.ts";
import type { AuditRecorder } from "./audit.ts";

// RFC 6750 section 2.1: the scheme is case-insensitive; the token is a run of visible characters.
const BEARER_PATTERN = /^Bearer +([\x21-\x7e]+) *$/i;

// Operator tokens and every other opaque secret start with this prefix; access tokens are JWTs.
const OPAQUE_SECRET_PREFIX = "arbor_";

/** Resources a service principal's access token may act on: the envelope routes. */
const SERVICE_RESOURCES: ReadonlySet<RouteResource> = new Set(["data_key", "ciphertext"]);

/**
 * Sets `request.principal` on every routed request: anonymous for public routes, otherwise the
 * operator behind the `Authorization: Bearer` token, or, when `tokens` is given, the service
 * principal behind an Arbor access token whose `aud` is Arbor's API audience. A missing or
 * rejected operator token gives 401 UNAUTHENTICATED and an `auth.failed` event; a rejected access
 * token gives 401 and a `token.rejected` event. Neither event contains the token.
 */
export function registerAuthentication(
  app: FastifyInstance,
  operators: Pick<OperatorTokenService, "authenticate">,
  audit: AuditRecorder,
  tokens?: Pick<TokenService, "verify" | "apiAudience" | "recordRejection">,
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

    const token = match[1]!;
    if (tokens !== undefined && !token.startsWith(OPAQUE_SECRET_PREFIX)) {
      await authenticateAccessToken(request, token, meta, tokens, audit);
      return;
    }

    try {
      request.principal = await operators.authenticate(token);
    } catch (error) {
      // Anything else (a storage outage, a bug) is not the caller's fault and passes through.
      if (!isArborError(error, "UNAUTHENTICATED") && !isArborError(error, "INVALID_SECRET")) {
        throw error;
      }
      await audit.rejection(request, "auth.failed", "UNAUTHENTICATED", failureDetails(error), {
        kind: "operator-token",
        value: token,
      });
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

/**
 * Verifies an access token for Arbor's own API (the same verifier as introspection) and maps it
 * to a service principal, whose scope is its environment, tenant and service. It may only use the
 * envelope routes; any other route is 403 FORBIDDEN with an `authz.denied` event.
 */
async function authenticateAccessToken(
  request: FastifyRequest,
  token: string,
  meta: ArborRouteConfig,
  tokens: Pick<TokenService, "verify" | "apiAudience" | "recordRejection">,
  audit: AuditRecorder,
): Promise<void> {
  const result = await tokens.verify(token, { audience: tokens.apiAudience });
  if (!result.active) {
    request.auditState.settled = true;
    await tokens.recordRejection(
      {
        principal: { type: "anonymous", id: "anonymous" },
        sourceAddress: request.ip ?? null,
        requestId: request.id,
        action: meta.action,
      },
      result.rejection,
    );
    throw new ArborError(
      "UNAUTHENTICATED",
      "invalid bearer token: the access token is malformed, expired, revoked or not issued for this API",
    );
  }

  request.principal = requestPrincipal(result.principal, result.claims.jti);
  if (!SERVICE_RESOURCES.has(meta.resource)) {
    await audit.rejection(request, "authz.denied", "FORBIDDEN", {
      reason: "access tokens may only use the envelope routes",
    });
    throw new ArborError(
      "FORBIDDEN",
      `an access token may only call the data key and encryption routes; ${meta.action} needs an operator token`,
    );
  }
}
