import type { FastifyInstance, FastifyRequest } from "fastify";

import { ArborError } from "../../errors/index.ts";
import type { AuthorizationDecision, AuthorizationTarget, Authorizer } from "../deps.ts";
import { routeMeta } from "../route-config.ts";
import type { AuditRecorder } from "./audit.ts";

declare module "fastify" {
  interface FastifyRequest {
    /**
     * Decides the request again on the resource the route resolved (a key, a principal), with the
     * route's action. The route maps a denial to its own response: a key or principal it may not
     * see is "not found". A use of a break-glass grant is audited before this resolves.
     */
    decide(target: AuthorizationTarget): Promise<AuthorizationDecision>;
  }
}

const READ_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD"]);
const DEPLOYMENT_RESOURCES: ReadonlySet<string> = new Set(["sys", "audit_log", "policy"]);

/**
 * Decides every authenticated request before its body is read. Read-only principals may only
 * use GET routes, and only unscoped principals may use `sys` routes; then the authorizer decides
 * on the route's action and resource. A denial gives
 * 403 FORBIDDEN and an `authz.denied` event. Public routes are not submitted to the authorizer.
 */
export function registerAuthorization(
  app: FastifyInstance,
  authorizer: Authorizer,
  audit: AuditRecorder,
): void {
  app.decorateRequest("decide", function (this: FastifyRequest, target: AuthorizationTarget) {
    return decideTarget(this, target, authorizer, audit);
  });

  app.addHook("onRequest", async (request) => {
    const meta = routeMeta(request.routeOptions.config);
    if (meta === undefined || meta.public === true) return;

    const principal = request.principal;
    if (principal.readOnly && !READ_METHODS.has(request.method)) {
      await audit.rejection(request, "authz.denied", "FORBIDDEN", { reason: "read-only token" });
      throw new ArborError(
        "FORBIDDEN",
        `this token is read-only and may only use GET routes; ${meta.action} needs a writable token`,
      );
    }

    // Sealing, cancelling an unseal and reading metrics act on every environment at once, so a
    // token scoped to one environment must not reach them.
    // The audit log spans every environment and tenant, so the same holds for reading it, and
    // policies apply to every environment, so the same holds for them.
    if (DEPLOYMENT_RESOURCES.has(meta.resource) && principal.environment !== null) {
      await audit.rejection(request, "authz.denied", "FORBIDDEN", { reason: "scoped token" });
      throw new ArborError(
        "FORBIDDEN",
        `${meta.action} acts on the whole deployment; it needs a token without an environment scope`,
      );
    }

    const decision = await authorizer.authorize({
      principal,
      action: meta.action,
      resource: meta.resource,
      request,
    });
    if (!decision.allowed) {
      await audit.rejection(request, "authz.denied", "FORBIDDEN", {
        reason: decision.reason ?? null,
      });
      throw new ArborError("FORBIDDEN", `this token is not allowed to perform ${meta.action}`);
    }
  });
}

/** Grants whose use this request has already audited, so one request writes one event per grant. */
const auditedBreakGlass = new WeakMap<FastifyRequest, Set<string>>();

/**
 * Makes the second authorization decision, on the resolved resource. A denial is noted for the route's
 * failure event (never sent to the client). A use of a break-glass grant writes an
 * `authz.break_glass` event, durably, before the route may act on the resource.
 */
async function decideTarget(
  request: FastifyRequest,
  target: AuthorizationTarget,
  authorizer: Authorizer,
  audit: AuditRecorder,
): Promise<AuthorizationDecision> {
  const meta = routeMeta(request.routeOptions.config);
  if (meta === undefined) {
    throw new ArborError("INTERNAL", "an authorization decision was asked outside a route");
  }
  const decision = await authorizer.authorize({
    principal: request.principal,
    action: meta.action,
    resource: meta.resource,
    request,
    target,
  });
  if (!decision.allowed) {
    audit.note(request, { details: { authzDenied: decision.reason ?? "denied by policy" } });
    return decision;
  }
  if (decision.breakGlass === undefined) return decision;

  const { grantId, expiresAt } = decision.breakGlass;
  audit.note(request, { details: { breakGlassGrant: grantId } });
  const audited = auditedBreakGlass.get(request) ?? new Set<string>();
  if (!audited.has(grantId)) {
    audited.add(grantId);
    auditedBreakGlass.set(request, audited);
    await audit.extra(request, "authz.break_glass", {
      keyId: target.type === "key" ? target.key.id : null,
      credentialId: grantId,
      details: {
        action: meta.action,
        grantId,
        expiresAt,
        resourceType: target.type,
        resource: target.type === "key" ? target.key.path : target.id,
      },
    });
  }
  return decision;
}
