import type { AuditEventType } from "../audit/types.ts";
import type { Principal } from "./deps.ts";
import type { AuditState } from "./plugins/audit.ts";

/** The resources routes act on; the authorizer and audit events use these names. */
export type RouteResource =
  | "sys"
  | "key"
  | "key_version"
  | "data_key"
  | "ciphertext"
  | "operator_token"
  | "hierarchy"
  | "api_document"
  | "service_principal"
  | "access_token"
  | "issuer"
  | "audit_log"
  | "policy";

/**
 * Metadata every `/v1` route declares. The authentication, authorization and audit hooks read it,
 * and a test fails if a route lacks it.
 */
export interface RouteMeta {
  /** What the route does, `<area>.<verb>`, such as `key.rotate`; the authorizer decides on it. */
  action: string;
  resource: RouteResource;
  /**
   * The audit event the route writes, on success and on failure; null for pure reads, which
   * write none.
   */
  auditEvent: AuditEventType | null;
}

export interface ArborRouteConfig extends RouteMeta {
  /** Served without a token; the principal is anonymous and the authorizer is not asked. */
  public?: boolean;
  /** Served while the root is sealed or not initialised (the `sys` routes and the API document). */
  whileSealed?: boolean;
}

declare module "fastify" {
  interface FastifyContextConfig {
    action?: string;
    resource?: RouteResource;
    auditEvent?: AuditEventType | null;
    public?: boolean;
    whileSealed?: boolean;
  }

  interface FastifyRequest {
    /** Set by the authentication hook on every routed request. */
    principal: Principal;
    /** Audit bookkeeping of this request; see `plugins/audit.ts`. */
    auditState: AuditState;
  }
}

/** Returns the route's metadata, or undefined for requests that matched no Arbor route (404). */
export function routeMeta(config: {
  action?: string;
  resource?: RouteResource;
  auditEvent?: AuditEventType | null;
  public?: boolean;
  whileSealed?: boolean;
}): ArborRouteConfig | undefined {
  if (config.action === undefined || config.resource === undefined) return undefined;
  if (config.auditEvent === undefined) return undefined;
  return {
    action: config.action,
    resource: config.resource,
    auditEvent: config.auditEvent,
    public: config.public === true,
    whileSealed: config.whileSealed === true,
  };
}
