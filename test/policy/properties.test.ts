import assert from "node:assert/strict";
import { describe, test } from "node:test";

import type { FastifyRequest } from "fastify";
import fc from "fast-check";

import {
  ACTIONS,
  ACTION_NAMES,
  createCedarAuthorizer,
  GrantIndex,
  PolicyEngine,
  type PolicyGrant,
} from "../../src/policy/index.ts";
import {
  keyResource,
  keyVersionResource,
  principalResource,
  scopeResource,
  withinOwnScope,
  type BreakGlassFacts,
  type PrincipalFacts,
  type ResourceFacts,
} from "../../src/policy/entities.ts";
import type { ResourceType } from "../../src/policy/actions.ts";
import type { Principal } from "../../src/server/index.ts";

const NOW = Date.UTC(2030, 0, 1);
const ENVIRONMENTS = ["prod", "stage", "dev"] as const;
const TENANTS = ["-", "acme", "globex"] as const;
const SERVICES = ["billing", "ledger"] as const;

/**
 * Stored policies a user might write, from careful to reckless. The guards must hold with any of
 * them in effect, because a satisfied `forbid` wins over every `permit`.
 */
const STORED = [
  `permit (principal, action, resource);`,
  `permit (principal in Arbor::Role::"rotator", action == Arbor::Action::"key.rotate", resource);`,
  `permit (principal is Arbor::Workload, action, resource);`,
  `permit (principal, action in Arbor::Action::"deployment", resource) when { principal.readOnly };`,
  `permit (principal, action, resource is Arbor::Key) when { resource.tenant == "globex" };`,
  `forbid (principal, action == Arbor::Action::"crypto.decrypt", resource) when { resource.env == "prod" };`,
] as const;

const engines = new Map<string, PolicyEngine>();

/** Returns the engine of a combination of stored policies, built once and without a cache. */
function engineWith(stored: readonly number[]): PolicyEngine {
  const id = stored.join(",");
  let engine = engines.get(id);
  if (engine === undefined) {
    engine = new PolicyEngine({ cacheTtlMs: 0 });
    engine.load(stored.map((index, n) => ({ name: `p${n}`, version: 1, text: STORED[index]! })));
    engines.set(id, engine);
  }
  return engine;
}

const environment = fc.constantFrom(...ENVIRONMENTS);
const tenant = fc.constantFrom(...TENANTS);
const service = fc.constantFrom(...SERVICES);

const principalArbitrary: fc.Arbitrary<PrincipalFacts> = fc.oneof(
  fc
    .record({
      type: fc.constant("Operator" as const),
      id: fc.constant("opt_p"),
      environment: fc.option(environment, { nil: null }),
      tenant: fc.option(fc.constantFrom("acme", "globex"), { nil: null }),
      service: fc.constant(null),
      readOnly: fc.boolean(),
      root: fc.boolean(),
      roles: fc.subarray([
        "global-admin",
        "environment-admin",
        "tenant-admin",
        "auditor",
        "rotator",
        "service",
      ]),
    })
    .map((facts) => (facts.environment === null ? { ...facts, tenant: null } : facts)),
  fc.record({
    type: fc.constantFrom("Service" as const, "Workload" as const),
    id: fc.constant("svc_p"),
    environment,
    tenant,
    service: service.map((name): string | null => name),
    readOnly: fc.constant(false),
    root: fc.constant(false),
    roles: fc.subarray(["service", "global-admin", "rotator"]),
  }),
);

const breakGlassArbitrary: fc.Arbitrary<BreakGlassFacts | null> = fc.option(
  fc.record({
    grantId: fc.constant("grt_p"),
    expiresAt: fc.constantFrom(NOW - 1, NOW, NOW + 1, NOW + 3_600_000),
    environment,
    tenant: fc.constantFrom(...TENANTS, "*"),
  }),
  { nil: null },
);

function resourceArbitrary(type: ResourceType): fc.Arbitrary<ResourceFacts> {
  const key = fc.record({
    id: fc.constant("key_r"),
    path: fc.constant("r"),
    environment,
    tenant,
    service: fc.constantFrom(...SERVICES, "-"),
    kind: fc.constantFrom("master", "service"),
    purpose: fc.constantFrom("wrap", "encrypt", "sign"),
  });
  switch (type) {
    case "Key":
      return key.map(keyResource);
    case "KeyVersion":
      return fc
        .tuple(key, fc.integer({ min: 1, max: 5 }))
        .map(([k, v]) => keyVersionResource(k, v));
    case "Principal":
      return fc
        .record({
          id: fc.constant("opt_r"),
          kind: fc.constantFrom("operator" as const, "service" as const),
          environment: fc.option(environment, { nil: null }),
          tenant: fc.option(tenant, { nil: null }),
          service: fc.option(service, { nil: null }),
        })
        .map(principalResource);
    case "Environment":
      return environment.map((env) =>
        scopeResource("Environment", { environment: env, tenant: null }),
      );
    case "Tenant":
      return fc
        .tuple(environment, tenant)
        .map(([env, ten]) => scopeResource("Tenant", { environment: env, tenant: ten }));
    default:
      return fc.constant(scopeResource(type, { environment: null, tenant: null }));
  }
}

const requestArbitrary = fc.constantFrom(...ACTION_NAMES).chain((action) =>
  fc.record({
    action: fc.constant(action),
    principal: principalArbitrary,
    resource: fc.constantFrom(...ACTIONS[action].resources).chain(resourceArbitrary),
    breakGlass: breakGlassArbitrary,
    stored: fc.subarray([0, 1, 2, 3, 4, 5]),
  }),
);

function own(principal: PrincipalFacts) {
  return { env: principal.environment ?? "*", tenant: principal.tenant ?? "*" };
}

/** Checks the break-glass rule: unexpired, for the resource's environment, and its tenant or every tenant. */
function covers(grant: BreakGlassFacts | null, resource: ResourceFacts): boolean {
  if (grant === null || grant.expiresAt <= NOW) return false;
  return (
    grant.environment === resource.env && (grant.tenant === "*" || grant.tenant === resource.tenant)
  );
}

describe("scope guards", () => {
  test("no cross-scope allow without break-glass", () => {
    fc.assert(
      fc.property(requestArbitrary, (request) => {
        const decision = engineWith(request.stored).decide({ ...request, now: NOW });
        if (!decision.allowed) return;
        assert.ok(
          withinOwnScope(own(request.principal), request.resource) ||
            covers(request.breakGlass, request.resource),
          `allowed ${request.action} on ${request.resource.type} ${request.resource.env}/${request.resource.tenant} ` +
            `for ${request.principal.type} ${own(request.principal).env}/${own(request.principal).tenant} ` +
            `by ${decision.policies.join(", ")}`,
        );
      }),
      { numRuns: 3000 },
    );
  });

  test("read-only principals only read", () => {
    fc.assert(
      fc.property(requestArbitrary, (request) => {
        const decision = engineWith(request.stored).decide({ ...request, now: NOW });
        if (!decision.allowed || !request.principal.readOnly) return;
        assert.ok(
          (ACTIONS[request.action].groups as readonly string[]).includes("read"),
          `read-only principal allowed ${request.action}`,
        );
      }),
      { numRuns: 1000 },
    );
  });

  test("expired or revoked grants reach nothing", async () => {
    const engine = engineWith([0]);
    const grantArbitrary = fc.record({
      environment,
      tenant: fc.constantFrom(...TENANTS, "*"),
      expiresAt: fc.constantFrom(NOW - 60_000, NOW, NOW + 60_000),
      revokedAt: fc.option(fc.constant(NOW - 1), { nil: null }),
    });
    const keyActions = ACTION_NAMES.filter((action) =>
      (ACTIONS[action].resources as readonly string[]).some(
        (type) => type === "Key" || type === "KeyVersion",
      ),
    );
    const keyArbitrary = fc.record({
      id: fc.constant("key_r"),
      path: fc.constant("r"),
      environment,
      tenant,
      service: fc.constantFrom(...SERVICES, "-"),
      kind: fc.constant("service"),
      purpose: fc.constant("encrypt"),
    });

    await fc.assert(
      fc.asyncProperty(
        principalArbitrary,
        fc.array(grantArbitrary, { maxLength: 3 }),
        fc.constantFrom(...keyActions),
        keyArbitrary,
        async (facts, specs, action, key) => {
          const grants: PolicyGrant[] = specs.map((spec, n) => ({
            id: `grt_${n}`,
            principalId: facts.id,
            kind: "break_glass",
            role: null,
            environment: spec.environment,
            tenant: spec.tenant,
            reason: "property",
            createdAt: NOW - 3_600_000,
            createdBy: "opt_root",
            expiresAt: spec.expiresAt,
            revokedAt: spec.revokedAt,
          }));
          const authorizer = createCedarAuthorizer({
            engine,
            grants: () => new GrantIndex(grants),
            clock: { now: () => NOW },
            scopeDenials: { inc: () => {} },
            logger: { error: () => {} },
          });
          const versioned = (ACTIONS[action].resources as readonly string[]).includes("Key")
            ? {}
            : { version: 1 };
          const decision = await authorizer.authorize({
            principal: toPrincipal(facts),
            action,
            resource: "key",
            request: { id: "req-property" } as FastifyRequest,
            target: { type: "key", key, ...versioned },
          });
          if (!decision.allowed) return;

          const resource = { env: key.environment, tenant: key.tenant };
          const live = grants.some(
            (grant) =>
              grant.revokedAt === null &&
              grant.expiresAt! > NOW &&
              grant.environment === resource.env &&
              (grant.tenant === "*" || grant.tenant === resource.tenant),
          );
          assert.ok(
            withinOwnScope(own(facts), resource) || live,
            `allowed ${action} outside the scope with only expired, revoked or other grants`,
          );
          assert.equal(decision.breakGlass !== undefined, !withinOwnScope(own(facts), resource));
        },
      ),
      { numRuns: 1000 },
    );
  });
});

function toPrincipal(facts: PrincipalFacts): Principal {
  if (facts.type === "Operator") {
    return {
      type: "operator",
      id: facts.id,
      environment: facts.environment,
      tenant: facts.tenant,
      readOnly: facts.readOnly,
      root: facts.root,
    };
  }
  return {
    type: "service",
    id: facts.id,
    environment: facts.environment!,
    tenant: facts.tenant!,
    service: facts.service!,
    readOnly: false,
    root: false,
    tokenId: facts.type === "Workload" ? "tok_p" : null,
  };
}
