import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import type { LightMyRequestResponse } from "fastify";

import {
  createKeys,
  HIERARCHY,
  keyUrl,
  openPolicyServer,
  operatorToken,
  type PolicyHarness,
} from "./harness.ts";

const PLAINTEXT = Buffer.from("card 4111").toString("base64");

/** The error body without the request id, with `reference` replaced, for comparing two responses. */
function errorShape(response: LightMyRequestResponse, reference: string) {
  const { error } = response.json<{ error: Record<string, unknown> }>();
  const { requestId: _requestId, ...rest } = error;
  const text = JSON.stringify(rest);
  const quoted = JSON.stringify(reference).slice(1, -1);
  return {
    status: response.statusCode,
    ...(JSON.parse(reference === "" ? text : text.replaceAll(quoted, "REF")) as object),
  };
}

async function encrypt(harness: PolicyHarness, token: string, key: string): Promise<string> {
  const response = await harness.call("POST", keyUrl(key, "/encrypt"), {
    token,
    body: { plaintext: PLAINTEXT },
  });
  assert.equal(response.statusCode, 200, response.body);
  return response.json<{ ciphertext: string }>().ciphertext;
}

describe("authorization over HTTP", () => {
  let harness: PolicyHarness;
  let acme: string;
  let globex: string;
  let stage: { id: string; token: string };

  before(async () => {
    harness = await openPolicyServer();
    await createKeys(harness, HIERARCHY);
    acme = (await operatorToken(harness, { environment: "prod", tenant: "acme" })).token;
    globex = (await operatorToken(harness, { environment: "prod", tenant: "globex" })).token;
    stage = await operatorToken(harness, { environment: "stage" });
  });

  after(async () => {
    await harness.close();
  });

  test("cross-tenant key is a missing key", async () => {
    const foreign = "prod/globex/billing:encrypt";
    const missing = "prod/acme/nothere:encrypt";
    for (const [method, suffix, body] of [
      ["GET", "", undefined],
      ["POST", "/rotate", {}],
      ["POST", "/encrypt", { plaintext: PLAINTEXT }],
      ["POST", "/data-key", {}],
    ] as const) {
      const crossing = await harness.call(method, keyUrl(foreign, suffix), { token: acme, body });
      const absent = await harness.call(method, keyUrl(missing, suffix), { token: acme, body });
      assert.equal(crossing.statusCode, 404, crossing.body);
      assert.deepEqual(errorShape(crossing, foreign), errorShape(absent, missing), suffix);
    }
  });

  test("cross-tenant decrypt fails like a missing key", async () => {
    const foreignCiphertext = await encrypt(harness, globex, "prod/globex/billing:encrypt");
    const crossing = await harness.call("POST", "/v1/decrypt", {
      token: acme,
      body: { ciphertext: foreignCiphertext },
    });

    // A ciphertext of another deployment names a key id that does not exist here.
    const other = await openPolicyServer();
    let absentCiphertext: string;
    try {
      await createKeys(other, ["prod", "prod/acme", "prod/acme/billing:encrypt"]);
      absentCiphertext = await encrypt(other, other.rootToken, "prod/acme/billing:encrypt");
    } finally {
      await other.close();
    }
    const absent = await harness.call("POST", "/v1/decrypt", {
      token: acme,
      body: { ciphertext: absentCiphertext },
    });

    assert.equal(crossing.statusCode, 400, crossing.body);
    assert.deepEqual(errorShape(crossing, ""), errorShape(absent, ""));
    assert.equal(crossing.json<{ error: { code: string } }>().error.code, "DECRYPTION_FAILED");

    const own = await harness.call("POST", "/v1/decrypt", {
      token: globex,
      body: { ciphertext: foreignCiphertext },
    });
    assert.equal(own.statusCode, 200, own.body);
  });

  test("scope denials are counted by scope", async () => {
    await harness.call("GET", keyUrl("prod/globex/billing:encrypt"), { token: acme });
    await harness.call("GET", keyUrl("prod/acme/billing:encrypt"), { token: stage.token });
    const metrics = await harness.call("GET", "/v1/sys/metrics");
    assert.equal(metrics.statusCode, 200, metrics.body);
    assert.match(metrics.body, /^arbor_scope_denials_total\{scope="tenant"\} [1-9]/m);
    assert.match(metrics.body, /^arbor_scope_denials_total\{scope="environment"\} [1-9]/m);
  });

  test("applied policy takes effect without restart", async () => {
    const rotate = () =>
      harness.call("POST", keyUrl("prod/acme/ledger:encrypt", "/rotate"), {
        token: acme,
        body: {},
      });
    assert.equal((await rotate()).statusCode, 200);

    const applied = await harness.call("PUT", "/v1/policies/freeze-acme", {
      body: {
        policy: `@id("no-rotation") @reason("acme is frozen for the audit")
forbid (principal, action == Arbor::Action::"key.rotate", resource)
when { resource.tenant == "acme" };`,
      },
    });
    assert.equal(applied.statusCode, 200, applied.body);
    assert.equal(applied.json<{ version: number }>().version, 1);

    const frozen = await rotate();
    assert.equal(frozen.statusCode, 403, frozen.body);
    const [denied] = (await harness.events("authz.denied")).slice(-1);
    assert.match(String(denied?.details.reason), /freeze-acme\/no-rotation/);

    const removed = await harness.call("DELETE", "/v1/policies/freeze-acme");
    assert.equal(removed.statusCode, 200, removed.body);
    assert.equal((await rotate()).statusCode, 200);
  });

  test("policy change is audited with its outbox row", async () => {
    const applied = await harness.call("PUT", "/v1/policies/audited", {
      body: {
        policy: `permit (principal == Arbor::Operator::"opt_nobody", action == Arbor::Action::"key.read", resource);`,
      },
    });
    assert.equal(applied.statusCode, 200, applied.body);

    const events = (await harness.events("policy.changed")).filter(
      (event) => event.details.name === "audited",
    );
    assert.equal(events.length, 1, "one event per change");
    assert.equal(events[0]!.outcome, "success");
    assert.equal(events[0]!.details.change, "applied");
    assert.equal(events[0]!.details.version, 1);

    const outbox = await harness.storage.db
      .selectFrom("outbox")
      .select("payload")
      .where("topic", "=", "policy.changed")
      .execute();
    assert.ok(outbox.some((row) => JSON.parse(row.payload).name === "audited"));

    const again = await harness.call("PUT", "/v1/policies/audited", {
      body: {
        policy: `permit (principal == Arbor::Operator::"opt_nobody", action == Arbor::Action::"key.read", resource);`,
      },
    });
    assert.equal(again.json<{ changed: boolean }>().changed, false);
    const after = (await harness.events("policy.changed")).filter(
      (e) => e.details.name === "audited",
    );
    // The request is recorded, as every request is, but as no change.
    assert.equal(after.length, 2);
    assert.equal(after[1]!.details.changed, false);
    assert.equal(after[1]!.details.version, undefined, "an unchanged apply stores no version");
  });

  test("root token can undo a policy that denies everything", async () => {
    const applied = await harness.call("PUT", "/v1/policies/lockout", {
      body: { policy: "forbid (principal, action, resource);" },
    });
    assert.equal(applied.statusCode, 200, applied.body);
    const listed = await harness.call("GET", "/v1/policies");
    assert.equal(listed.statusCode, 200, listed.body);
    const removed = await harness.call("DELETE", "/v1/policies/lockout");
    assert.equal(removed.statusCode, 200, removed.body);
  });

  test("deeply nested policy is rejected before Cedar parses it", async () => {
    const nested = `${"(".repeat(300)}true${")".repeat(300)}`;
    const response = await harness.call("PUT", "/v1/policies/deep", {
      body: { policy: `permit (principal, action, resource) when { ${nested} };`, dryRun: true },
    });
    assert.equal(response.statusCode, 400, response.body);
    assert.match(response.body, /INVALID_POLICY/);
    const after = await harness.call("GET", "/v1/policies");
    assert.equal(after.statusCode, 200, "the engine still works");
  });

  test("invalid policy is rejected and audited", async () => {
    const response = await harness.call("PUT", "/v1/policies/broken", {
      body: { policy: `forbid (principal, action, resource) when { resource.owner == "x" };` },
    });
    assert.equal(response.statusCode, 400, response.body);
    const error = response.json<{ error: { code: string; message: string } }>().error;
    assert.equal(error.code, "INVALID_POLICY");
    assert.match(error.message, /owner/);
    const failures = (await harness.events("policy.changed")).filter(
      (e) => e.outcome === "failure",
    );
    assert.ok(failures.some((event) => event.details.name === "broken"));

    const listed = await harness.call("GET", "/v1/policies");
    const names = listed.json<{ policies: Array<{ name: string }> }>().policies.map((p) => p.name);
    assert.ok(!names.includes("broken"));
  });

  test("scoped tokens cannot change policies", async () => {
    const scoped = await harness.call("PUT", "/v1/policies/sneaky", {
      token: acme,
      body: { policy: `permit (principal, action, resource);` },
    });
    assert.equal(scoped.statusCode, 403, scoped.body);
    const grant = await harness.call("POST", "/v1/grants", {
      token: stage.token,
      body: { principal: stage.id, breakGlass: { environment: "prod" }, ttl: "1h", reason: "self" },
    });
    assert.equal(grant.statusCode, 403, grant.body);
  });

  test("permissive stored policy cannot cross tenants", async () => {
    const applied = await harness.call("PUT", "/v1/policies/everything", {
      body: { policy: `permit (principal, action, resource);` },
    });
    assert.equal(applied.statusCode, 200, applied.body);
    try {
      const crossing = await harness.call("GET", keyUrl("prod/globex/billing:encrypt"), {
        token: acme,
      });
      assert.equal(crossing.statusCode, 404, crossing.body);
      const seal = await harness.call("POST", "/v1/sys/seal", { token: acme, body: {} });
      assert.equal(seal.statusCode, 403, seal.body);
    } finally {
      await harness.call("DELETE", "/v1/policies/everything");
    }
  });

  test("break-glass grant reaches across and expires", async () => {
    const key = keyUrl("prod/acme/billing:encrypt");
    assert.equal((await harness.call("GET", key, { token: stage.token })).statusCode, 404);

    const created = await harness.call("POST", "/v1/grants", {
      body: {
        principal: stage.id,
        breakGlass: { environment: "prod", tenant: "acme" },
        ttl: "1h",
        reason: "incident 42: billing key inspection",
      },
    });
    assert.equal(created.statusCode, 201, created.body);
    const grant = created.json<{ id: string; expiresAt: string }>();

    const reached = await harness.call("GET", key, { token: stage.token });
    assert.equal(reached.statusCode, 200, reached.body);
    const uses = (await harness.events("authz.break_glass")).filter(
      (event) => event.credentialId === grant.id,
    );
    assert.equal(uses.length, 1, "the use is audited as break-glass");
    assert.equal(uses[0]!.principal, stage.id);
    assert.equal(uses[0]!.details.action, "key.read");

    const otherTenant = await harness.call("GET", keyUrl("prod/globex/billing:encrypt"), {
      token: stage.token,
    });
    assert.equal(otherTenant.statusCode, 404, "the grant names one tenant");

    harness.clock.advance(61 * 60_000);
    assert.equal((await harness.call("GET", key, { token: stage.token })).statusCode, 404);
  });

  test("revoked grant reaches nothing", async () => {
    const created = await harness.call("POST", "/v1/grants", {
      body: {
        principal: stage.id,
        breakGlass: { environment: "prod" },
        ttl: "1h",
        reason: "drill",
      },
    });
    const { id } = created.json<{ id: string }>();
    const key = keyUrl("prod/ops:encrypt");
    assert.equal((await harness.call("GET", key, { token: stage.token })).statusCode, 200);

    const revoked = await harness.call("DELETE", `/v1/grants/${id}`);
    assert.equal(revoked.statusCode, 200, revoked.body);
    assert.notEqual(revoked.json<{ revokedAt: string | null }>().revokedAt, null);
    assert.equal((await harness.call("GET", key, { token: stage.token })).statusCode, 404);
  });

  test("auditor role grant replaces the admin role", async () => {
    const auditor = await operatorToken(harness, { readOnly: true });
    assert.equal((await harness.call("GET", "/v1/keys", { token: auditor.token })).statusCode, 200);
    const granted = await harness.call("POST", "/v1/grants", {
      body: { principal: auditor.id, role: "auditor", reason: "quarterly audit" },
    });
    assert.equal(granted.statusCode, 201, granted.body);

    assert.equal((await harness.call("GET", "/v1/keys", { token: auditor.token })).statusCode, 403);
    const explained = await harness.call(
      "GET",
      `/v1/explain?principal=${auditor.id}&action=audit.read`,
    );
    assert.equal(explained.statusCode, 200, explained.body);
    const body = explained.json<{ decision: string; policies: Array<{ id: string }> }>();
    assert.equal(body.decision, "allow");
    assert.deepEqual(
      body.policies.map((policy) => policy.id),
      ["role.auditor"],
    );
  });

  test("explain names the deciding guard", async () => {
    const response = await harness.call(
      "GET",
      `/v1/explain?principal=${stage.id}&action=key.rotate&key=${encodeURIComponent("prod/globex/billing:encrypt")}`,
    );
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json<{
      decision: string;
      summary: string;
      policies: Array<{ id: string; source: string; reason: string }>;
    }>();
    assert.equal(body.decision, "deny");
    assert.deepEqual(
      body.policies.map((policy) => policy.id),
      ["guard.environment"],
    );
    assert.equal(body.policies[0]!.source, "builtin");
    assert.match(body.summary, /another environment/);
  });
});
