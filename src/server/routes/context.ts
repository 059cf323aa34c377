import type { FastifyRequest } from "fastify";

import { ArborError } from "../../errors/index.ts";
import type { KeyScope } from "../../hierarchy/index.ts";
import type { DecidedKeyScope } from "../../policy/key-lookup.ts";
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

/**
 * Builds the scope of a request's key look-ups, which carries the second authorization decision.
 * The key tree of the composition root decides each key it resolves with the request's action (on
 * the given version, for the version routes) and treats a denied key as not found.
 */
export function keyScopeOf(request: FastifyRequest, version?: number): DecidedKeyScope {
  return {
    ...scopeOf(request.principal),
    decideKey: async (key) => {
      const target =
        version === undefined
          ? { type: "key" as const, key }
          : { type: "key" as const, key, version };
      return (await request.decide(target)).allowed;
    },
  };
}
