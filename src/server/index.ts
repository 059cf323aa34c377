export { buildApp, type TlsOptions } from "./app.ts";
export { allowAllAuthorizer } from "./authorizer.ts";
export {
  ANONYMOUS,
  type AnonymousPrincipal,
  type ApplyHierarchy,
  type ApplyResult,
  type AuthorizationDecision,
  type AuthorizationRequest,
  type Authorizer,
  type EnvelopeService,
  type InitializableRoot,
  type Principal,
  type ServerDeps,
  type ServerLimits,
} from "./deps.ts";
export { createLogger, redactPaths, SECRET_FIELD_NAMES, type LoggerOptions } from "./logger.ts";
export { createMetrics, type IssuanceKind, type ServerMetrics } from "./metrics.ts";
export type { ArborRouteConfig, RouteMeta, RouteResource } from "./route-config.ts";
