import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import type { LightMyRequestResponse } from "fastify";

import { createKeyTree, MaterialCache } from "../../src/hierarchy/index.ts";
import { isActionName, requireKeyDecisions } from "../../src/policy/index.ts";
import { isArborError } from "../../src/errors/index.ts";
import { createSealedRoot } from "../../src/root/index.ts";
import { createLogger } from "../../src/server/index.ts";
import { FakeClock } from "../helpers/clock.ts";
import { dialects } from "../helpers/dialects.ts";
import {
  createKeys,
  HIERARCHY,
  keyUrl,
  openPolicyServer,
  operatorToken,
  type PolicyHarness,
} from "./harness.ts";

interface Operation {
  "x-arbor-action"?: string;
  security?: unknown[];
}

/** Routes without a credential: they serve public documents or run before any principal exists. */
const ANONYMOUS = new Set([
  "GET /v1/openapi.json",
  "GET /v1/sys/health",
  "GET /v1/sys/seal-status",
  "POST /v1/sys/init",
  "POST /v1/sys/unseal",
  "GET /v1/issuers/{*}",
  "GET /.well-known/oauth-authorization-server/v1/issuers/{*}",
]);

type Sample = (harness: PolicyHarness, fixtures: Fixtures) => Promise<LightMyRequestResponse>;

interface Fixtures {
  clientId: string;
  clientSecret: string;
  accessToken: string;
  ciphertext: string;
  wrappedDataKey: string;
  operatorTokenId: string;
}

const KEY = "prod/acme/billing:encrypt";
const PLAINTEXT = Buffer.from("x").toString("base64");

function basic(fixtures: Fixtures): Record<string, string> {
  return {
    authorization: `Basic ${Buffer.from(`${fixtures.clientId}:${fixtures.clientSecret}`).toString("base64")}`,
  };
}

/**
 * Requests that reach a route's resource, for the routes that must decide on it (a key, a
 * service principal, an access token's key). Every other route gets a generic request: the
 * authorization hook decides before the body is read, so any body shows that decision.
 */
const RESOURCE_SAMPLES: Record<string, { target: "key" | "principal"; sample: Sample }> = {
  "GET /v1/keys/{key}": { target: "key", sample: (h) => h.call("GET", keyUrl(KEY)) },
  "POST /v1/keys": {
    target: "key",
    sample: (h) => h.call("POST", "/v1/keys", { body: { path: "prod/acme/fresh:encrypt" } }),
  },
  "GET /v1/keys": { target: "key", sample: (h) => h.call("GET", "/v1/keys") },
  "GET /v1/keys/tree": { target: "key", sample: (h) => h.call("GET", "/v1/keys/tree") },
  "POST /v1/keys/{key}/rotate": {
    target: "key",
    sample: (h) => h.call("POST", keyUrl("prod/acme/ledger:encrypt", "/rotate"), { body: {} }),
  },
  "POST /v1/keys/{key}/versions/{version}/disable": {
    target: "key",
    sample: (h) => h.call("POST", keyUrl("prod/acme/ledger:encrypt", "/versions/1/disable")),
  },
  "POST /v1/keys/{key}/versions/{version}/enable": {
    target: "key",
    sample: (h) => h.call("POST", keyUrl("prod/acme/ledger:encrypt", "/versions/1/enable")),
  },
  "POST /v1/keys/{key}/versions/{version}/revoke": {
    target: "key",
    sample: (h) => h.call("POST", keyUrl("prod/acme/ledger:encrypt", "/versions/1/revoke")),
  },
  "PUT /v1/keys/{key}/min-decryption-version": {
    target: "key",
    sample: (h) => h.call("PUT", keyUrl(KEY, "/min-decryption-version"), { body: { version: 1 } }),
  },
  "POST /v1/keys/{key}/data-key": {
    target: "key",
    sample: (h) => h.call("POST", keyUrl(KEY, "/data-key"), { body: {} }),
  },
  "POST /v1/keys/{key}/data-key/wrapped": {
    target: "key",
    sample: (h) => h.call("POST", keyUrl(KEY, "/data-key/wrapped"), { body: {} }),
  },
  "POST /v1/keys/{key}/encrypt": {
    target: "key",
    sample: (h) => h.call("POST", keyUrl(KEY, "/encrypt"), { body: { plaintext: PLAINTEXT } }),
  },
  "POST /v1/decrypt": {
    target: "key",
    sample: (h, f) => h.call("POST", "/v1/decrypt", { body: { ciphertext: f.ciphertext } }),
  },
  "POST /v1/rewrap": {
    target: "key",
    sample: (h, f) => h.call("POST", "/v1/rewrap", { body: { ciphertext: f.ciphertext } }),
  },
  "POST /v1/data-key/decrypt": {
    target: "key",
    sample: (h, f) =>
      h.call("POST", "/v1/data-key/decrypt", { body: { wrappedDataKey: f.wrappedDataKey } }),
  },
  "POST /v1/data-key/rewrap": {
    target: "key",
    sample: (h, f) =>
      h.call("POST", "/v1/data-key/rewrap", { body: { wrappedDataKey: f.wrappedDataKey } }),
  },
  "POST /v1/oauth/token": {
    target: "key",
    sample: (h, f) => h.form("/v1/oauth/token", { grant_type: "client_credentials" }, basic(f)),
  },
  "POST /v1/oauth/introspect": {
    target: "key",
    sample: (h, f) => h.form("/v1/oauth/introspect", { token: f.accessToken }, basic(f)),
  },
  "POST /v1/oauth/revoke": {
    target: "key",
    sample: (h, f) => h.form("/v1/oauth/revoke", { token: f.accessToken }, basic(f)),
  },
  "POST /v1/services": {
    target: "principal",
    sample: (h) =>
      h.call("POST", "/v1/services", {
        body: {
          name: "second",
          environment: "prod",
          tenant: "acme",
          service: "billing",
          audiences: ["https://api.example"],
        },
      }),
  },
  "GET /v1/services": { target: "principal", sample: (h) => h.call("GET", "/v1/services") },
  "GET /v1/services/{id}": {
    target: "principal",
    sample: (h, f) => h.call("GET", `/v1/services/${f.clientId}`),
  },
  "POST /v1/services/{id}/secrets": {
    target: "principal",
    sample: (h, f) =>
      h.call("POST", `/v1/services/${f.clientId}/secrets`, { body: { overlap: "1h" } }),
  },
  "DELETE /v1/services/{id}/secrets/{secretId}": {
    target: "principal",
    sample: (h, f) => h.call("DELETE", `/v1/services/${f.clientId}/secrets/sec_missing`),
  },
  "POST /v1/operator/tokens": {
    target: "principal",
    sample: (h) =>
      h.call("POST", "/v1/operator/tokens", { body: { name: "walk", environment: "prod" } }),
  },
  "GET /v1/operator/tokens": {
    target: "principal",
    sample: (h) => h.call("GET", "/v1/operator/tokens"),
  },
  "DELETE /v1/operator/tokens/{id}": {
    target: "principal",
    sample: (h, f) => h.call("DELETE", `/v1/operator/tokens/${f.operatorTokenId}`),
  },
};

function genericRequest(harness: PolicyHarness, method: string, path: string) {
  const url = path.replace(/\{[^}]+\}/g, "walk").replace("*", "walk");
  const verb = method as "GET" | "POST" | "PUT" | "DELETE";
  return harness.call(verb, url, verb === "POST" || verb === "PUT" ? { body: {} } : {});
}

describe("every route is decided", () => {
  let harness: PolicyHarness;
  let fixtures: Fixtures;
  let operations: Array<{ route: string; method: string; path: string; operation: Operation }>;

  before(async () => {
    harness = await openPolicyServer({ decisionCacheTtlMs: 0 });
    await createKeys(harness, HIERARCHY);
    const created = await harness.call("POST", "/v1/services", {
      body: {
        name: "walker",
        environment: "prod",
        tenant: "acme",
        service: "billing",
        audiences: [harness.deps.tokens!.apiAudience],
      },
    });
    assert.equal(created.statusCode, 201, created.body);
    const principal = created.json<{ id: string; clientSecret: string }>();
    const issued = await harness.form(
      "/v1/oauth/token",
      { grant_type: "client_credentials" },
      {
        authorization: `Basic ${Buffer.from(`${principal.id}:${principal.clientSecret}`).toString("base64")}`,
      },
    );
    assert.equal(issued.statusCode, 200, issued.body);
    const encrypted = await harness.call("POST", keyUrl(KEY, "/encrypt"), {
      body: { plaintext: PLAINTEXT },
    });
    const dataKey = await harness.call("POST", keyUrl(KEY, "/data-key/wrapped"), { body: {} });
    fixtures = {
      clientId: principal.id,
      clientSecret: principal.clientSecret,
      accessToken: issued.json<{ access_token: string }>().access_token,
      ciphertext: encrypted.json<{ ciphertext: string }>().ciphertext,
      wrappedDataKey: dataKey.json<{ wrappedDataKey: string }>().wrappedDataKey,
      operatorTokenId: (await operatorToken(harness, { environment: "stage" })).id,
    };

    const document = await harness.call("GET", "/v1/openapi.json", { token: null });
    const paths = document.json<{ paths: Record<string, Record<string, Operation>> }>().paths;
    operations = Object.entries(paths).flatMap(([path, item]) =>
      (["get", "post", "put", "delete", "patch"] as const)
        .filter((method) => item[method] !== undefined)
        .map((method) => ({
          route: `${method.toUpperCase()} ${path}`,
          method: method.toUpperCase(),
          path,
          operation: item[method]!,
        })),
    );
    // Sealing stops every later request before authorization, so it runs last.
    operations.sort(
      (a, b) => Number(a.route === "POST /v1/sys/seal") - Number(b.route === "POST /v1/sys/seal"),
    );
  });

  after(async () => {
    await harness.close();
  });

  test("every route checks authorization", async () => {
    assert.ok(operations.length >= 40, `only ${operations.length} routes`);
    for (const { route, method, path, operation } of operations) {
      if (ANONYMOUS.has(route)) {
        assert.deepEqual(
          operation.security,
          [],
          `${route} is listed as anonymous but is not public`,
        );
        continue;
      }
      const action = operation["x-arbor-action"]!;
      assert.ok(isActionName(action), `${route}: action ${action} is not in the Cedar schema`);

      const resource = RESOURCE_SAMPLES[route];
      const response =
        resource === undefined
          ? await genericRequest(harness, method, path)
          : await resource.sample(harness, fixtures);
      const requestId = response.headers["x-request-id"];
      const decided = harness.decisions.filter(
        (decision) => decision.requestId === requestId && decision.action === action,
      );
      assert.ok(
        decided.length > 0,
        `${route} (${action}) was not decided: ${response.statusCode} ${response.body}`,
      );

      if (resource !== undefined) {
        assert.ok(
          decided.some((decision) => decision.target?.type === resource.target),
          `${route} did not decide on its ${resource.target}: ${response.statusCode} ${response.body}`,
        );
      }
    }
  });

  test("every resource sample names a route", () => {
    const routes = new Set(operations.map((entry) => entry.route));
    const stale = Object.keys(RESOURCE_SAMPLES).filter((route) => !routes.has(route));
    assert.deepEqual(stale, []);
  });
});

describe("key look-ups", () => {
  test("key look-up without a decision is refused", async () => {
    const opened = await dialects[0]!.open();
    try {
      const clock = new FakeClock();
      const root = await createSealedRoot({ store: opened.storage.sealedRoot, clock });
      const keyTree = createKeyTree({
        storage: opened.storage,
        root,
        clock,
        cache: new MaterialCache({ clock, maxEntries: 10, ttlMs: 1000 }),
        logger: createLogger({ level: "silent" }),
      });
      const decided = requireKeyDecisions(keyTree);
      for (const scope of [undefined, { environment: null, tenant: null }]) {
        await assert.rejects(decided.resolveKey("prod", undefined, scope), (error: unknown) =>
          isArborError(error, "INTERNAL"),
        );
      }
    } finally {
      await opened.close();
    }
  });
});
