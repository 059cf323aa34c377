import type { FastifyInstance } from "fastify";

import { ArborError } from "../../errors/index.ts";
import type { Authorizer } from "../deps.ts";
import { routeMeta } from "../route-config.ts";
import type { AuditRecorder } from "./audit.ts";

const READ_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD"]);

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
    // The audit log spans every environment and tenant, so the same holds for reading it.
    if ((meta.resource === "sys" || meta.resource === "audit_log") && principal.environment !== null) {
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
