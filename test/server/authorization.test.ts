import assert from "node:assert/strict";
import { describe, test } from "node:test";

import type { ApplyHierarchy, AuthorizationRequest } from "../../src/server/index.ts";
import { assertError, bearer, openUnsealedServer } from "./harness.ts";

describe("authorization and apply", () => {
  test("authorizer denial is 403 and audited", async () => {
    const seen: Array<Pick<AuthorizationRequest, "action" | "resource">> = [];
    const harness = await openUnsealedServer({
      authorizer: {
        authorize: ({ action, resource }) => {
          seen.push({ action, resource });
          return Promise.resolve(
            action === "key.create" ? { allowed: false, reason: "no creation" } : { allowed: true },
          );
        },
      },
    });
    try {
      const denied = await harness.app.inject({
        method: "POST",
        url: "/v1/keys",
        headers: bearer(harness.rootToken),
        payload: { path: "prod" },
      });
      const error = assertError(denied, 403, "FORBIDDEN");
      assert.ok(!error.message.includes("no creation"), "the policy reason is not for the client");

      const allowed = await harness.app.inject({
        method: "GET",
        url: "/v1/keys",
        headers: bearer(harness.rootToken),
      });
      assert.equal(allowed.statusCode, 200, allowed.body);
      assert.deepEqual(allowed.json(), { keys: [] }, "the denied key was created");

      const [event] = harness.audit.ofType("authz.denied");
      assert.ok(event, "no authz.denied event");
      assert.equal(event.outcome, "denied");
      assert.equal(event.errorCode, "FORBIDDEN");
      assert.equal(event.details.reason, "no creation");
      assert.equal(event.details.action, "key.create");
      assert.equal(harness.audit.ofType("key.created").length, 0, "a denial writes one event");

      assert.deepEqual(seen.slice(-2), [
        { action: "key.create", resource: "key" },
        { action: "key.list", resource: "key" },
      ]);
      assert.ok(
        !seen.some((request) => request.action === "sys.unseal"),
        "public routes are not submitted to the authorizer",
      );
    } finally {
      await harness.close();
    }
  });

  test("apply is not implemented without the module", async () => {
    const harness = await openUnsealedServer();
    try {
      const response = await harness.app.inject({
        method: "POST",
        url: "/v1/apply",
        headers: bearer(harness.rootToken),
        payload: { document: { apiVersion: "arbor/v1" } },
      });
      assertError(response, 501, "NOT_IMPLEMENTED");
    } finally {
      await harness.close();
    }
  });

  test("apply passes the document through", async () => {
    const calls: Array<{ document: unknown; dryRun: boolean; principal: string }> = [];
    const applyHierarchy: ApplyHierarchy = (document, dryRun, principal) => {
      calls.push({ document, dryRun, principal: principal.id });
      return Promise.resolve({
        plan: [{ action: "create", path: "prod" }],
        drift: [],
        applied: !dryRun,
      });
    };
    const harness = await openUnsealedServer({ applyHierarchy });
    try {
      const document = { apiVersion: "arbor/v1", environments: { prod: {} } };
      const response = await harness.app.inject({
        method: "POST",
        url: "/v1/apply",
        headers: bearer(harness.rootToken),
        payload: { document, dryRun: true },
      });
      assert.equal(response.statusCode, 200, response.body);
      assert.deepEqual(response.json(), {
        plan: [{ action: "create", path: "prod" }],
        drift: [],
        applied: false,
      });
      assert.equal(calls.length, 1);
      assert.deepEqual(calls[0]!.document, document);
      assert.equal(calls[0]!.dryRun, true);
      assert.match(calls[0]!.principal, /^opt_/);

      const [event] = harness.audit.ofType("hierarchy.applied");
      assert.equal(event?.details.dryRun, true);
    } finally {
      await harness.close();
    }
  });
});
