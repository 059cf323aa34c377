import type { Counter } from "prom-client";

import type { Clock } from "../clock.ts";
import type {
  AuthorizationDecision,
  AuthorizationRequest,
  AuthorizationTarget,
  Authorizer,
  Principal,
} from "../server/deps.ts";
import { actionSpec, type PrincipalType } from "./actions.ts";
import type { BuiltinRole } from "./builtin.ts";
import {
  breakGlassCovers,
  crossedScope,
  keyResource,
  keyVersionResource,
  principalResource,
  principalScope,
  scopeResource,
  withinOwnScope,
  type PrincipalFacts,
  type ResourceFacts,
} from "./entities.ts";
import type { DecisionRequest, EngineDecision, PolicyEngine } from "./engine.ts";
import type { GrantIndex } from "./grants.ts";
import { ANY } from "./schema.ts";

export interface CedarAuthorizerDeps {
  engine: PolicyEngine;
  /** The grants in effect; read on every decision, so a reload takes effect at once. */
  grants: () => GrantIndex;
  clock: Clock;
  /** `arbor_scope_denials_total`, labelled `scope`: environment or tenant. */
  scopeDenials: Pick<Counter<"scope">, "inc">;
  logger: { error(details: Record<string, unknown>, message: string): void };
}

/**
 * The authorizer behind the authorization hook and the key look-ups: it turns a request into
 * Cedar entities (principal with its roles and covering break-glass grant, the resource, the
 * action) and lets the policy engine decide.
 *
 * Without a target (the hook, before the body is read) the resource stands for the principal's
 * own scope, so the question is whether the principal may take the action at all. With a target
 * (a resolved key or principal), the question is whether it may take it there.
 */
export function createCedarAuthorizer(deps: CedarAuthorizerDeps): Authorizer & {
  /** The Cedar request the authorizer would decide, for `arbor policy explain`. */
  requestOf(input: Omit<AuthorizationRequest, "request">): DecisionRequest | null;
} {
  function requestOf(input: Omit<AuthorizationRequest, "request">): DecisionRequest | null {
    const now = deps.clock.now();
    const grants = deps.grants();
    const principal = principalFacts(input.principal, grants, now);
    if (principal === null) return null;
    const resource =
      input.target === undefined
        ? ownScopeResource(input.action, principal)
        : targetResource(input.target);
    if (resource === null) return null;
    return buildDecisionRequest(principal, input.action, resource, grants, now);
  }

  return {
    requestOf,

    authorize(input: AuthorizationRequest): Promise<AuthorizationDecision> {
      // The root token can always manage policies and seal, whatever the stored policies decide,
      // so a stored policy that denies everything (or fails at evaluation) can be undone.
      const principal = input.principal;
      if (principal.type === "operator" && principal.root && RECOVERY_ACTIONS.has(input.action)) {
        return Promise.resolve({ allowed: true });
      }
      const request = requestOf(input);
      if (request === null) {
        return Promise.resolve({
          allowed: false,
          reason: `no policy covers ${input.principal.type} principals or action ${input.action}`,
        });
      }
      const decision = deps.engine.decide(request);
      return Promise.resolve(toAuthorization(request, decision, input));
    },
  };

  function toAuthorization(
    request: DecisionRequest,
    decision: EngineDecision,
    input: AuthorizationRequest,
  ): AuthorizationDecision {
    const own = principalScope(request.principal);
    if (decision.errors.length > 0) {
      deps.logger.error(
        { requestId: input.request.id, action: request.action, errors: decision.errors },
        "policy evaluation failed; the request is denied",
      );
    }
    if (!decision.allowed) {
      const crossed = crossedScope(own, request.resource);
      if (crossed !== null) deps.scopeDenials.inc({ scope: crossed });
      return { allowed: false, reason: denialReason(decision) };
    }

    if (withinOwnScope(own, request.resource)) return { allowed: true };
    // The guards only let a request leave the principal's scope with a covering grant; this
    // check repeats that outside Cedar, so a wrong policy cannot silently widen a scope.
    if (request.breakGlass === null) {
      deps.logger.error(
        { requestId: input.request.id, action: request.action, policies: decision.policies },
        "policies allowed a request outside the principal's scope without break-glass; denied",
      );
      return { allowed: false, reason: "outside the principal's scope" };
    }
    return {
      allowed: true,
      breakGlass: {
        grantId: request.breakGlass.grantId,
        expiresAt: request.breakGlass.expiresAt,
      },
    };
  }
}

/**
 * Builds the Cedar request. A resource outside the principal's own scope gets the principal's
 * unexpired break-glass grant that covers it, if there is one; expired and revoked grants are
 * never handed to Cedar.
 */
export function buildDecisionRequest(
  principal: PrincipalFacts,
  action: string,
  resource: ResourceFacts,
  grants: GrantIndex,
  now: number,
): DecisionRequest {
  const breakGlass = withinOwnScope(principalScope(principal), resource)
    ? null
    : (grants
        .breakGlassOf(principal.id, now)
        .find((grant) => breakGlassCovers(grant, resource, now)) ?? null);
  return { principal, action, resource, breakGlass, now };
}

function denialReason(decision: EngineDecision): string {
  if (decision.errors.length > 0) return `policy evaluation failed: ${decision.errors.join("; ")}`;
  if (decision.policies.length === 0) return "no policy permits this request";
  return `forbidden by ${decision.policies.join(", ")}`;
}

/**
 * Maps a request's principal to Cedar facts. A principal with role grants has exactly the granted
 * roles (an unscoped read-only token granted `auditor` is an auditor and nothing else). Without
 * one, an operator has the administrator role of its token's scope, and services (client
 * credentials) and workloads (access tokens) have `service`. Anonymous principals get no facts,
 * so they are denied.
 */
export function principalFacts(
  principal: Principal,
  grants: GrantIndex,
  now: number,
): PrincipalFacts | null {
  if (principal.type === "anonymous") return null;

  const granted = grants.rolesOf(principal.id, now);
  if (principal.type === "operator") {
    return {
      type: "Operator",
      id: principal.id,
      environment: principal.environment,
      tenant: principal.tenant,
      service: null,
      readOnly: principal.readOnly,
      root: principal.root,
      roles: granted.length > 0 ? granted : [operatorRole(principal)],
    };
  }
  const type: PrincipalType = principal.tokenId === null ? "Service" : "Workload";
  return {
    type,
    id: principal.id,
    environment: principal.environment,
    tenant: principal.tenant,
    service: principal.service,
    readOnly: false,
    root: false,
    roles: granted.length > 0 ? granted : ["service" satisfies BuiltinRole],
  };
}

function operatorRole(scope: { environment: string | null; tenant: string | null }): BuiltinRole {
  if (scope.environment === null) return "global-admin";
  return scope.tenant === null ? "environment-admin" : "tenant-admin";
}

/**
 * The resource of a decision without a target: one that stands for everything in the
 * principal's own scope, of the first resource type the action applies to. Deployment-wide
 * types (the system, policies, the audit log) are always the whole deployment.
 */
function ownScopeResource(action: string, principal: PrincipalFacts): ResourceFacts | null {
  const type = actionSpec(action)?.resources[0];
  if (type === undefined) return null;

  const reach = { environment: principal.environment, tenant: principal.tenant };
  const scopeId = `scope:${principal.environment ?? ANY}/${principal.tenant ?? ANY}`;
  switch (type) {
    case "System":
    case "Policy":
    case "AuditLog":
      return scopeResource(type, { environment: null, tenant: null });
    case "Environment":
    case "Tenant":
      return scopeResource(principal.tenant === null ? "Environment" : "Tenant", reach);
    case "Key":
    case "KeyVersion": {
      const key = {
        id: scopeId,
        path: ANY,
        environment: principal.environment ?? ANY,
        tenant: principal.tenant ?? ANY,
        service: principal.service ?? ANY,
        kind: ANY,
        purpose: ANY,
      };
      return type === "Key" ? keyResource(key) : keyVersionResource(key, 0);
    }
    case "Principal":
      return principalResource({ id: scopeId, kind: "operator", ...reach, service: null });
  }
}

function targetResource(target: AuthorizationTarget): ResourceFacts {
  switch (target.type) {
    case "key":
      return target.version === undefined
        ? keyResource(target.key)
        : keyVersionResource(target.key, target.version);
    case "principal":
      return principalResource(target);
  }
}

/** Actions the root token keeps under any stored policy, so a bad policy can be undone. */
const RECOVERY_ACTIONS: ReadonlySet<string> = new Set([
  "policy.list",
  "policy.read",
  "policy.apply",
  "policy.delete",
  "policy.explain",
  "sys.seal",
]);
