import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { routeDeclarationProblems } from "../../src/server/route-check.ts";
import { openServer, type ServerHarness } from "./harness.ts";

interface Operation {
  "x-arbor-action"?: string;
  "x-arbor-resource"?: string;
  "x-arbor-audit-event"?: string | null;
  security?: unknown[];
  requestBody?: unknown;
  parameters?: Array<{ in: string; name: string }>;
  responses?: Record<string, unknown>;
}

const HTTP_METHODS = ["get", "post", "put", "patch", "delete"] as const;

describe("route table", () => {
  let harness: ServerHarness;
  let operations: Array<{ method: string; path: string; operation: Operation }>;

  before(async () => {
    harness = await openServer();
    const response = await harness.app.inject({ method: "GET", url: "/v1/openapi.json" });
    assert.equal(response.statusCode, 200, response.body);
    const document = response.json<{ paths: Record<string, Record<string, Operation>> }>();
    operations = Object.entries(document.paths).flatMap(([path, item]) =>
      HTTP_METHODS.filter((method) => item[method] !== undefined).map((method) => ({
        method: method.toUpperCase(),
        path,
        operation: item[method]!,
      })),
    );
  });

  after(async () => {
    await harness.close();
  });

  test("OpenAPI document lists every route", () => {
    // printRoutes lists each URL with its methods, such as "/v1/keys (POST, GET, HEAD)"; HEAD
    // routes are Fastify's automatic companions of GET routes.
    const printed = harness.app.printRoutes({ commonPrefix: false });
    const methodCount = [...printed.matchAll(/\(([A-Z, ]+)\)/g)]
      .flatMap((match) => match[1]!.split(", "))
      .filter((method) => method !== "HEAD").length;
    assert.equal(operations.length, methodCount, printed);
    assert.ok(operations.length >= 25, `only ${operations.length} operations`);
  });

  test("every /v1 route declares metadata", () => {
    for (const { method, path, operation } of operations) {
      const label = `${method} ${path}`;
      assert.ok(path.startsWith("/v1/"), `${label} is outside /v1`);
      assert.match(operation["x-arbor-action"] ?? "", /^[a-z_]+(\.[a-z_]+)+$/, `${label} action`);
      assert.ok(operation["x-arbor-resource"], `${label} has no resource`);
      assert.ok("x-arbor-audit-event" in operation, `${label} has no audit event entry`);
    }
  });

  test("every /v1 route declares schemas", () => {
    for (const { method, path, operation } of operations) {
      const label = `${method} ${path}`;
      const responses = Object.keys(operation.responses ?? {});
      assert.ok(
        responses.some((code) => code.startsWith("2")),
        `${label} has no success response schema`,
      );
      assert.ok(responses.includes("4XX"), `${label} has no 4xx error schema: ${responses.join()}`);
      if (method === "POST" || method === "PUT") {
        assert.ok(operation.requestBody !== undefined, `${label} has no body schema`);
      }
      for (const name of [...path.matchAll(/\{([^}]+)\}/g)].map((match) => match[1])) {
        assert.ok(
          operation.parameters?.some(
            (parameter) => parameter.in === "path" && parameter.name === name,
          ),
          `${label} does not declare path parameter ${name}`,
        );
      }
    }
  });

  test("state-changing routes write audit events", () => {
    for (const { method, path, operation } of operations) {
      if (method === "GET") continue;
      assert.equal(
        typeof operation["x-arbor-audit-event"],
        "string",
        `${method} ${path} changes state or hands out a credential but writes no audit event`,
      );
    }
  });

  test("only sys routes and the document are public", () => {
    const publicRoutes = operations
      .filter(
        ({ operation }) => Array.isArray(operation.security) && operation.security.length === 0,
      )
      .map(({ method, path }) => `${method} ${path}`)
      .sort();
    assert.deepEqual(publicRoutes, [
      "GET /v1/openapi.json",
      "GET /v1/sys/health",
      "GET /v1/sys/seal-status",
      "POST /v1/sys/init",
      "POST /v1/sys/unseal",
    ]);
  });
});

describe("route declaration check", () => {
  const complete = {
    method: "POST",
    url: "/v1/things",
    config: { action: "thing.create", resource: "key", auditEvent: "key.created" },
    schema: {
      body: { type: "object", additionalProperties: false, properties: {} },
      response: { 200: { type: "object" } },
    },
  } as const;

  test("complete route has no problems", () => {
    assert.deepEqual(routeDeclarationProblems(complete), []);
  });

  test("missing metadata is reported", () => {
    const problems = routeDeclarationProblems({ ...complete, config: { action: "thing.create" } });
    assert.deepEqual(problems, ["config lacks action, resource or auditEvent"]);
  });

  test("missing schemas are reported", () => {
    const problems = routeDeclarationProblems({ ...complete, url: "/v1/things/:id", schema: {} });
    assert.deepEqual(problems, ["no response schema", "no params schema", "no body schema"]);
  });

  test("open body schema is reported", () => {
    const problems = routeDeclarationProblems({
      ...complete,
      schema: { ...complete.schema, body: { type: "object" } },
    });
    assert.deepEqual(problems, ["the body schema does not set additionalProperties: false"]);
  });

  test("routes outside /v1 are not checked", () => {
    assert.deepEqual(routeDeclarationProblems({ method: "GET", url: "/metrics" }), []);
  });
});
