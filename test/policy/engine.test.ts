import assert from "node:assert/strict";
import { describe, test } from "node:test";

import fc from "fast-check";

import { isArborError } from "../../src/errors/index.ts";
import { cedar } from "../../src/policy/cedar.ts";
import {
  keyResource,
  keyVersionResource,
  principalEntity,
  resourceEntity,
  type PrincipalFacts,
  type ResourceFacts,
} from "../../src/policy/entities.ts";
import {
  ACTION_NAMES,
  ACTIONS,
  BUILTIN_POLICIES,
  PolicyEngine,
  SCHEMA_TEXT,
  validateDocuments,
  type DecisionRequest,
} from "../../src/policy/index.ts";

const NOW = Date.UTC(2030, 0, 1);

const stageAdmin: PrincipalFacts = {
  type: "Operator",
  id: "opt_stage",
  environment: "stage",
  tenant: null,
  service: null,
  readOnly: false,
  root: false,
  roles: ["environment-admin"],
};

const globalAdmin: PrincipalFacts = {
  ...stageAdmin,
  id: "opt_root",
  environment: null,
  roles: ["global-admin"],
};

const prodKey = keyResource({
  id: "key_prod",
  path: "prod/acme/billing:encrypt",
  environment: "prod",
  tenant: "acme",
  service: "billing",
  kind: "service",
  purpose: "encrypt",
});

function request(
  principal: PrincipalFacts,
  action: string,
  resource: ResourceFacts,
): DecisionRequest {
  return { principal, action, resource, breakGlass: null, now: NOW };
}

function rejectsAsInvalidPolicy(text: string, pattern: RegExp): void {
  assert.throws(
    () => validateDocuments([{ name: "doc", version: 1, text }]),
    (error: unknown) => isArborError(error, "INVALID_POLICY") && pattern.test(error.message),
  );
}

describe("policy engine", () => {
  test("built-in policies validate against the schema", () => {
    const answer = cedar().validate({
      schema: SCHEMA_TEXT,
      policies: {
        staticPolicies: Object.fromEntries(
          BUILTIN_POLICIES.map((policy) => [policy.id, policy.text]),
        ),
      },
      validationSettings: { mode: "strict" },
    });
    assert.equal(answer.type, "success", JSON.stringify(answer));
    if (answer.type === "success") assert.deepEqual(answer.validationErrors, []);
  });

  test("default is deny", () => {
    const engine = new PolicyEngine({ cacheTtlMs: 0 });
    const nobody: PrincipalFacts = { ...stageAdmin, environment: "prod", roles: [] };
    const decision = engine.decide(request(nobody, "key.read", prodKey));
    assert.equal(decision.allowed, false);
    assert.deepEqual(decision.policies, []);
  });

  test("missing attribute never fails open", () => {
    // Without a schema, Cedar skips a forbid whose condition reads a missing attribute, and a
    // permit wins: the request below is allowed although the key is in another environment.
    const missingEnv = { uid: resourceEntity(prodKey).uid, attrs: { tenant: "acme" }, parents: [] };
    const raw = cedar().isAuthorized({
      principal: principalEntity(stageAdmin, null).uid,
      action: { type: "Arbor::Action", id: "key.read" },
      resource: missingEnv.uid,
      context: { now: NOW },
      policies: {
        staticPolicies: {
          ...Object.fromEntries(BUILTIN_POLICIES.map((policy) => [policy.id, policy.text])),
          readers: `permit (principal, action == Arbor::Action::"key.read", resource);`,
        },
      },
      entities: [principalEntity(stageAdmin, null), missingEnv],
    });
    assert.equal(raw.type === "success" && raw.response.decision, "allow", "the hazard is real");

    // The engine validates entities against the schema and denies on any error.
    const engine = new PolicyEngine({ cacheTtlMs: 0 });
    const withoutEnv = { ...prodKey, env: undefined } as unknown as ResourceFacts;
    const decision = engine.decide(request(stageAdmin, "key.read", withoutEnv));
    assert.equal(decision.allowed, false);
    assert.match(decision.errors.join(), /attribute `env`/);

    const withoutService = { ...prodKey, env: "stage", attrs: { path: "x" } } as ResourceFacts;
    assert.equal(engine.decide(request(stageAdmin, "key.read", withoutService)).allowed, false);

    // A stored policy that reads an attribute the schema does not declare is never stored.
    rejectsAsInvalidPolicy(
      `forbid (principal, action, resource) when { resource.owner == "mallory" };`,
      /owner/,
    );
  });

  test("evaluation error denies", () => {
    // Strict validation cannot rule out overflow; Cedar skips the erroring forbid.
    const engine = new PolicyEngine({ cacheTtlMs: 0 });
    engine.load([
      {
        name: "overflow",
        version: 1,
        text: `forbid (principal, action, resource is Arbor::KeyVersion)
when { resource.version * 9223372036854775807 > 0 };`,
      },
    ]);
    const version = keyVersionResource(
      {
        id: "key_v",
        path: "prod/x:encrypt",
        environment: "prod",
        tenant: "-",
        service: "x",
        kind: "service",
        purpose: "encrypt",
      },
      2,
    );
    const decision = engine.decide(request(globalAdmin, "key.version.revoke", version));
    assert.equal(decision.allowed, false);
    assert.match(decision.errors.join(), /overflow/);
  });

  test("invalid documents are rejected", () => {
    rejectsAsInvalidPolicy(`permit (principal, action, resource`, /unexpected end of input/);
    rejectsAsInvalidPolicy(`permit (principal == ?principal, action, resource);`, /templates/);
    rejectsAsInvalidPolicy(
      `permit (principal, action == Arbor::Action::"key.fly", resource);`,
      /key\.fly/,
    );
    rejectsAsInvalidPolicy(
      `@id("a") permit (principal, action, resource);\n@id("a") forbid (principal, action, resource);`,
      /appears twice/,
    );
    assert.throws(
      () =>
        validateDocuments([
          { name: "Bad Name", version: 1, text: "permit (principal, action, resource);" },
        ]),
      (error: unknown) => isArborError(error, "INVALID_ARGUMENT"),
    );
  });

  test("load clears cached decisions", () => {
    const engine = new PolicyEngine({ cacheTtlMs: 60_000 });
    const admin: PrincipalFacts = { ...stageAdmin, environment: "prod" };
    assert.equal(engine.decide(request(admin, "key.rotate", prodKey)).allowed, true);
    engine.load([
      {
        name: "freeze",
        version: 1,
        text: `forbid (principal, action == Arbor::Action::"key.rotate", resource);`,
      },
    ]);
    const decision = engine.decide(request(admin, "key.rotate", prodKey));
    assert.equal(decision.allowed, false);
    assert.deepEqual(decision.policies, ["freeze#1"]);
  });

  test("cached break-glass decision ends at expiry", () => {
    const engine = new PolicyEngine({ cacheTtlMs: 60_000 });
    const breakGlass = {
      grantId: "grt_x",
      expiresAt: NOW + 1000,
      environment: "prod",
      tenant: "*",
    };
    const allowed = engine.decide({ ...request(stageAdmin, "key.read", prodKey), breakGlass });
    assert.equal(allowed.allowed, true);
    const later = engine.decide({
      ...request(stageAdmin, "key.read", prodKey),
      breakGlass,
      now: NOW + 1000,
    });
    assert.equal(later.allowed, false);
  });

  test("split by action decides like the whole set", () => {
    const stored = [
      `permit (principal, action in Arbor::Action::"read", resource) when { resource.env == "stage" };`,
      `forbid (principal, action == Arbor::Action::"crypto.decrypt", resource);`,
      `permit (principal in Arbor::Role::"rotator", action in [Arbor::Action::"key.rotate", Arbor::Action::"key.read"], resource);`,
      `forbid (principal is Arbor::Workload, action in Arbor::Action::"token", resource);`,
    ];
    const engine = new PolicyEngine({ cacheTtlMs: 0 });
    engine.load(stored.map((text, n) => ({ name: `s${n}`, version: 1, text })));
    const whole = Object.fromEntries([
      ...BUILTIN_POLICIES.map((policy) => [policy.id, policy.text]),
      ...stored.map((text, n) => [`s${n}#1`, text]),
    ]);

    const principal = fc.record({
      type: fc.constantFrom("Operator" as const, "Workload" as const),
      id: fc.constant("opt_x"),
      environment: fc.constantFrom("prod", "stage"),
      tenant: fc.constantFrom("acme", null),
      service: fc.constantFrom("billing", null),
      readOnly: fc.boolean(),
      root: fc.constant(false),
      roles: fc.subarray(["environment-admin", "tenant-admin", "rotator", "service"]),
    });
    const action = fc.constantFrom(
      ...ACTION_NAMES.filter((name) => ACTIONS[name].resources[0] === "Key"),
    );
    const key = fc
      .record({
        environment: fc.constantFrom("prod", "stage"),
        tenant: fc.constantFrom("acme", "-"),
      })
      .map(({ environment, tenant }) =>
        keyResource({
          id: "key_k",
          path: "k",
          environment,
          tenant,
          service: "billing",
          kind: "service",
          purpose: "encrypt",
        }),
      );

    fc.assert(
      fc.property(principal, action, key, (facts, name, resource) => {
        const entities = [principalEntity(facts, null), resourceEntity(resource)];
        const answer = cedar().isAuthorized({
          principal: entities[0]!.uid,
          action: { type: "Arbor::Action", id: name },
          resource: entities[1]!.uid,
          context: { now: NOW },
          schema: SCHEMA_TEXT,
          validateRequest: true,
          policies: { staticPolicies: whole },
          entities,
        });
        assert.equal(answer.type, "success");
        const expected = answer.type === "success" ? answer.response : undefined;
        const decision = engine.decide(request(facts, name, resource));
        assert.equal(decision.allowed, expected?.decision === "allow");
        assert.deepEqual(
          [...decision.policies].sort(),
          [...(expected?.diagnostics.reason ?? [])].sort(),
        );
      }),
      { numRuns: 500 },
    );
  });
});
