import { ArborError } from "../../errors/index.ts";
import type { KeyScope } from "../../hierarchy/index.ts";
import type { OperatorPrincipal } from "../../operators/types.ts";
import { serviceKeyScope } from "../../tokens/index.ts";
import type { Principal, ServerDeps } from "../deps.ts";
import type { AuditRecorder } from "../plugins/audit.ts";

/** The dependencies every route module receives from `buildApp`. */
export interface RouteContext {
  deps: ServerDeps;
  audit: AuditRecorder;
}

/**
 * Returns the authenticated operator of a request. Throws INTERNAL for an anonymous principal,
 * which only a route wrongly marked public could see here.
 */
export function operatorOf(principal: Principal): OperatorPrincipal {
  if (principal.type !== "operator") {
    throw new ArborError("INTERNAL", "an authenticated route ran without an operator principal");
  }
  return principal;
}

/**
 * Returns the environment and tenant the request may reach. A service principal's scope also
 * names its service, which the envelope routes' key look-ups enforce.
 */
export function scopeOf(principal: Principal): KeyScope {
  if (principal.type === "service") return serviceKeyScope(principal);
  const operator = operatorOf(principal);
  return { environment: operator.environment, tenant: operator.tenant };
}
