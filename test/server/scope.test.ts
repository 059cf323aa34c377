import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { applyHierarchy } from "../../src/hierarchy/index.ts";
import {
  assertError,
  bearer,
  openUnsealedServer,
  type Initialised,
  type ServerHarness,
} from "./harness.ts";

async function stageToken(harness: ServerHarness & Initialised): Promise<string> {
  const created = await harness.app.inject({
    method: "POST",
    url: "/v1/operator/tokens",
    headers: bearer(harness.rootToken),
    payload: { name: "ci-stage", environment: "stage", ttl: "1h" },
  });
  assert.equal(created.statusCode, 201, created.body);
  return created.json<{ token: string }>().token;
}

describe("environment scope on deployment-wide routes", () => {
  test("scoped token cannot seal, cancel or read metrics", async () => {
    const harness = await openUnsealedServer();
    try {
      const token = await stageToken(harness);
      for (const [method, url] of [
        ["POST", "/v1/sys/seal"],
        ["POST", "/v1/sys/unseal/cancel"],
        ["GET", "/v1/sys/metrics"],
      ] as const) {
        const response = await harness.app.inject({ method, url, headers: bearer(token) });
        assertError(response, 403, "FORBIDDEN");
      }
      assert.equal(harness.root.status().state, "unsealed");
      assert.ok(harness.audit.ofType("authz.denied").length >= 3);
    } finally {
      await harness.close();
    }
  });

  test("scoped apply refuses keys outside its scope", async () => {
    // The harness builds its key tree after this hook is created, so the hook reads it late.
    let harness: (ServerHarness & Initialised) | undefined = undefined;
    harness = await openUnsealedServer({
      applyHierarchy: async (document, dryRun, principal) => {
        const scope = { environment: principal.environment, tenant: principal.tenant };
        const result = await applyHierarchy(harness!.deps.keyTree, document, { dryRun, scope });
        return { ...result, applied: !dryRun };
      },
    });
    try {
      const token = await stageToken(harness);
      const prodDocument = {
        apiVersion: "arbor/v1",
        environments: { prod: { services: { sneaky: { encrypt: {} } } } },
      };
      for (const dryRun of [true, false]) {
        const refused = await harness.app.inject({
          method: "POST",
          url: "/v1/apply",
          headers: bearer(token),
          payload: { document: prodDocument, dryRun },
        });
        const error = assertError(refused, 403, "FORBIDDEN");
        assert.match(error.message, /"prod"/);
        assert.ok(!refused.body.includes("drift"), "nothing about existing keys is returned");
      }
      assert.deepEqual(await harness.deps.keyTree.listKeys(), []);

      const stageDocument = {
        apiVersion: "arbor/v1",
        environments: { stage: { services: { api: { encrypt: {} } } } },
      };
      const applied = await harness.app.inject({
        method: "POST",
        url: "/v1/apply",
        headers: bearer(token),
        payload: { document: stageDocument },
      });
      assert.equal(applied.statusCode, 200, applied.body);
      assert.deepEqual(
        (await harness.deps.keyTree.listKeys()).map((k) => k.path),
        ["stage", "stage/api:encrypt"],
      );
    } finally {
      await harness.close();
    }
  });
});
