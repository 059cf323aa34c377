import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  basicAuth,
  keyParam,
  openComposedServer,
  type ComposedServer,
  type HttpResult,
} from "../audit/composed.ts";

interface Operation {
  "x-arbor-audit-event"?: string | null;
  responses?: Record<string, { content?: Record<string, { schema?: unknown }> }>;
}

/** A request that succeeds on an unsealed server; it creates what it needs first. */
type Perform = (server: ComposedServer) => Promise<Performed>;

interface Performed {
  response: HttpResult;
  /** Where the event was written, when the request ran on a server of its own (init). */
  server?: ComposedServer;
}

type RouteEntry = { perform: Perform } | { exempt: string };

const HTTP_METHODS = ["get", "post", "put", "patch", "delete"] as const;

/**
 * Response fields that hand a credential to the caller. A GET route whose response declares one
 * of them is audited like a state change.
 */
const CREDENTIAL_FIELDS = new Set([
  "token",
  "rootToken",
  "clientSecret",
  "access_token",
  "plaintext",
  "shares",
  "wrappedDataKey",
]);

let counter = 0;
/** Returns a fresh path segment, so no request depends on what another one created. */
function unique(prefix: string): string {
  counter += 1;
  return `${prefix}${counter}`;
}

async function expectStatus(
  pending: Promise<HttpResult>,
  status: number,
  what: string,
): Promise<HttpResult> {
  const response = await pending;
  assert.equal(response.status, status, `${what}: ${response.text}`);
  return response;
}

/** Creates `walk` (once) and a fresh encrypt key under it; returns the key path. */
async function freshEncryptKey(server: ComposedServer): Promise<string> {
  const environment = await server.call("POST", "/v1/keys", { path: "walk" });
  assert.ok([201, 409].includes(environment.status), environment.text);
  const path = `walk/${unique("enc")}:encrypt`;
  await expectStatus(server.call("POST", "/v1/keys", { path }), 201, `create ${path}`);
  return path;
}

async function rotate(server: ComposedServer, path: string): Promise<void> {
  await expectStatus(
    server.call("POST", `/v1/keys/${keyParam(path)}/rotate`, {}),
    200,
    `rotate ${path}`,
  );
}

async function dataKey(
  server: ComposedServer,
  path: string,
): Promise<{ wrappedDataKey: string; dataKeyId: string }> {
  const issued = await expectStatus(
    server.call("POST", `/v1/keys/${keyParam(path)}/data-key/wrapped`, { context: { a: "1" } }),
    200,
    "data key",
  );
  return issued.body as { wrappedDataKey: string; dataKeyId: string };
}

async function encrypt(server: ComposedServer, path: string): Promise<string> {
  const sealed = await expectStatus(
    server.call("POST", `/v1/keys/${keyParam(path)}/encrypt`, {
      plaintext: Buffer.from("audited payload").toString("base64"),
      context: { a: "1" },
    }),
    200,
    "encrypt",
  );
  return sealed.body.ciphertext as string;
}

interface Service {
  id: string;
  clientSecret: string;
  clientSecretId: string;
}

/** Creates a sign key and a service principal on it. */
async function freshService(server: ComposedServer): Promise<Service> {
  const environment = await server.call("POST", "/v1/keys", { path: "walk" });
  assert.ok([201, 409].includes(environment.status), environment.text);
  const service = unique("svc");
  await expectStatus(
    server.call("POST", "/v1/keys", { path: `walk/${service}:sign` }),
    201,
    "sign key",
  );
  const created = await expectStatus(
    server.call("POST", "/v1/services", {
      name: service,
      environment: "walk",
      service,
      audiences: ["https://walk.example"],
    }),
    201,
    "service principal",
  );
  return created.body as Service;
}

/** A policy that allows one action to a principal that does not exist. */
const UNUSED_POLICY =
  'permit (principal == Arbor::Operator::"opt_nobody", action == Arbor::Action::"key.read", resource);';

/** Creates an operator token and returns its id. */
async function freshOperator(server: ComposedServer): Promise<string> {
  const created = await expectStatus(
    server.call("POST", "/v1/operator/tokens", { name: unique("operator") }),
    201,
    "operator token",
  );
  return created.body.id as string;
}

async function accessToken(server: ComposedServer, service: Service): Promise<string> {
  const issued = await expectStatus(
    server.form(
      "/v1/oauth/token",
      { grant_type: "client_credentials" },
      basicAuth(service.id, service.clientSecret),
    ),
    200,
    "access token",
  );
  return issued.body.access_token as string;
}

/**
 * Every route that changes state or hands out a credential, and a request that succeeds on it.
 * A route the OpenAPI document lists but this table lacks fails the first test by name.
 */
const ROUTES: Record<string, RouteEntry> = {
  "POST /v1/sys/init": {
    // Initialisation works once per deployment, so it runs on a server of its own.
    async perform() {
      const fresh = await openComposedServer({ initialise: false });
      const response = await fresh.call(
        "POST",
        "/v1/sys/init",
        { shares: 3, threshold: 2 },
        { token: null },
      );
      return { response, server: fresh };
    },
  },
  "POST /v1/sys/seal": {
    async perform(server) {
      const response = await server.call("POST", "/v1/sys/seal", {});
      await server.unseal();
      return { response };
    },
  },
  "POST /v1/sys/unseal": {
    async perform(server) {
      await server.seal();
      const begun = await expectStatus(
        server.call("POST", "/v1/sys/unseal", {}, { token: null }),
        200,
        "begin unseal",
      );
      let response = begun;
      for (const share of server.shares.slice(0, 3)) {
        response = await server.call(
          "POST",
          "/v1/sys/unseal",
          { nonce: begun.body.nonce, share },
          { token: null },
        );
      }
      assert.equal(response.body.sealed, false, response.text);
      return { response };
    },
  },
  "POST /v1/sys/unseal/cancel": {
    async perform(server) {
      await server.seal();
      await expectStatus(
        server.call("POST", "/v1/sys/unseal", {}, { token: null }),
        200,
        "begin unseal",
      );
      const response = await server.call("POST", "/v1/sys/unseal/cancel", {});
      await server.unseal();
      return { response };
    },
  },
  "POST /v1/sys/root/rotate": {
    perform: async (server) => ({ response: await server.call("POST", "/v1/sys/root/rotate", {}) }),
  },
  "POST /v1/keys": {
    async perform(server) {
      return { response: await server.call("POST", "/v1/keys", { path: unique("walkenv") }) };
    },
  },
  "POST /v1/keys/{key}/rotate": {
    async perform(server) {
      const path = await freshEncryptKey(server);
      return { response: await server.call("POST", `/v1/keys/${keyParam(path)}/rotate`, {}) };
    },
  },
  "POST /v1/keys/{key}/versions/{version}/disable": {
    async perform(server) {
      const path = await freshEncryptKey(server);
      await rotate(server, path);
      const response = await server.call(
        "POST",
        `/v1/keys/${keyParam(path)}/versions/1/disable`,
        {},
      );
      return { response };
    },
  },
  "POST /v1/keys/{key}/versions/{version}/enable": {
    async perform(server) {
      const path = await freshEncryptKey(server);
      await rotate(server, path);
      await expectStatus(
        server.call("POST", `/v1/keys/${keyParam(path)}/versions/1/disable`, {}),
        200,
        "disable",
      );
      const response = await server.call(
        "POST",
        `/v1/keys/${keyParam(path)}/versions/1/enable`,
        {},
      );
      return { response };
    },
  },
  "POST /v1/keys/{key}/versions/{version}/revoke": {
    async perform(server) {
      const path = await freshEncryptKey(server);
      await rotate(server, path);
      const response = await server.call(
        "POST",
        `/v1/keys/${keyParam(path)}/versions/1/revoke`,
        {},
      );
      return { response };
    },
  },
  "PUT /v1/keys/{key}/min-decryption-version": {
    async perform(server) {
      const path = await freshEncryptKey(server);
      await rotate(server, path);
      const response = await server.call(
        "PUT",
        `/v1/keys/${keyParam(path)}/min-decryption-version`,
        { version: 2 },
      );
      return { response };
    },
  },
  "POST /v1/keys/{key}/data-key": {
    async perform(server) {
      const path = await freshEncryptKey(server);
      const response = await server.call("POST", `/v1/keys/${keyParam(path)}/data-key`, {});
      return { response };
    },
  },
  "POST /v1/keys/{key}/data-key/wrapped": {
    async perform(server) {
      const path = await freshEncryptKey(server);
      const response = await server.call("POST", `/v1/keys/${keyParam(path)}/data-key/wrapped`, {});
      return { response };
    },
  },
  "POST /v1/data-key/decrypt": {
    async perform(server) {
      const path = await freshEncryptKey(server);
      const { wrappedDataKey } = await dataKey(server, path);
      const response = await server.call("POST", "/v1/data-key/decrypt", {
        wrappedDataKey,
        context: { a: "1" },
      });
      return { response };
    },
  },
  "POST /v1/data-key/rewrap": {
    async perform(server) {
      const path = await freshEncryptKey(server);
      const { wrappedDataKey } = await dataKey(server, path);
      await rotate(server, path);
      const response = await server.call("POST", "/v1/data-key/rewrap", {
        wrappedDataKey,
        context: { a: "1" },
      });
      return { response };
    },
  },
  "POST /v1/keys/{key}/encrypt": {
    async perform(server) {
      const path = await freshEncryptKey(server);
      const response = await server.call("POST", `/v1/keys/${keyParam(path)}/encrypt`, {
        plaintext: Buffer.from("payload").toString("base64"),
      });
      return { response };
    },
  },
  "POST /v1/decrypt": {
    async perform(server) {
      const ciphertext = await encrypt(server, await freshEncryptKey(server));
      return { response: await server.call("POST", "/v1/decrypt", { ciphertext }) };
    },
  },
  "POST /v1/rewrap": {
    async perform(server) {
      const path = await freshEncryptKey(server);
      const ciphertext = await encrypt(server, path);
      await rotate(server, path);
      return { response: await server.call("POST", "/v1/rewrap", { ciphertext }) };
    },
  },
  "POST /v1/operator/tokens": {
    async perform(server) {
      return { response: await server.call("POST", "/v1/operator/tokens", { name: "walk" }) };
    },
  },
  "DELETE /v1/operator/tokens/{id}": {
    async perform(server) {
      const created = await expectStatus(
        server.call("POST", "/v1/operator/tokens", { name: "to-revoke" }),
        201,
        "operator token",
      );
      const response = await server.call("DELETE", `/v1/operator/tokens/${created.body.id}`);
      return { response };
    },
  },
  "POST /v1/audit/checkpoints": {
    async perform(server) {
      // A new record first, so there is something for the checkpoint to cover.
      await freshEncryptKey(server);
      return { response: await server.call("POST", "/v1/audit/checkpoints", {}) };
    },
  },
  "POST /v1/audit/prune": {
    async perform(server) {
      await freshEncryptKey(server);
      const checkpoint = await expectStatus(
        server.call("POST", "/v1/audit/checkpoints", {}),
        200,
        "checkpoint",
      );
      const response = await server.call("POST", "/v1/audit/prune", {
        through: checkpoint.body.treeSize,
      });
      return { response };
    },
  },
  "POST /v1/apply": {
    async perform(server) {
      const environment = unique("applied");
      const document = {
        apiVersion: "arbor/v1",
        environments: { [environment]: { services: { app: { encrypt: {} } } } },
      };
      return { response: await server.call("POST", "/v1/apply", { document }) };
    },
  },
  "PUT /v1/policies/{name}": {
    async perform(server) {
      const response = await server.call("PUT", `/v1/policies/${unique("walk")}`, {
        policy: UNUSED_POLICY,
      });
      return { response };
    },
  },
  "DELETE /v1/policies/{name}": {
    async perform(server) {
      const name = unique("walk");
      await expectStatus(
        server.call("PUT", `/v1/policies/${name}`, { policy: UNUSED_POLICY }),
        200,
        "policy",
      );
      return { response: await server.call("DELETE", `/v1/policies/${name}`) };
    },
  },
  "POST /v1/grants": {
    async perform(server) {
      const principal = await freshOperator(server);
      const response = await server.call("POST", "/v1/grants", {
        principal,
        role: "auditor",
        reason: "audit walk",
      });
      return { response };
    },
  },
  "DELETE /v1/grants/{id}": {
    async perform(server) {
      const principal = await freshOperator(server);
      const grant = await expectStatus(
        server.call("POST", "/v1/grants", { principal, role: "auditor", reason: "audit walk" }),
        201,
        "grant",
      );
      return { response: await server.call("DELETE", `/v1/grants/${grant.body.id}`) };
    },
  },
  "POST /v1/services": {
    async perform(server) {
      const environment = await server.call("POST", "/v1/keys", { path: "walk" });
      assert.ok([201, 409].includes(environment.status), environment.text);
      const service = unique("svc");
      await expectStatus(
        server.call("POST", "/v1/keys", { path: `walk/${service}:sign` }),
        201,
        "sign key",
      );
      const response = await server.call("POST", "/v1/services", {
        name: service,
        environment: "walk",
        service,
        audiences: ["https://walk.example"],
      });
      return { response };
    },
  },
  "POST /v1/services/{id}/secrets": {
    async perform(server) {
      const service = await freshService(server);
      return { response: await server.call("POST", `/v1/services/${service.id}/secrets`, {}) };
    },
  },
  "DELETE /v1/services/{id}/secrets/{secretId}": {
    async perform(server) {
      const service = await freshService(server);
      const response = await server.call(
        "DELETE",
        `/v1/services/${service.id}/secrets/${service.clientSecretId}`,
      );
      return { response };
    },
  },
  "POST /v1/oauth/token": {
    async perform(server) {
      const service = await freshService(server);
      const response = await server.form(
        "/v1/oauth/token",
        { grant_type: "client_credentials" },
        basicAuth(service.id, service.clientSecret),
      );
      return { response };
    },
  },
  "POST /v1/oauth/introspect": {
    async perform(server) {
      const token = await accessToken(server, await freshService(server));
      const response = await server.form(
        "/v1/oauth/introspect",
        { token },
        { authorization: `Bearer ${server.rootToken}` },
      );
      assert.equal(response.body.active, true, response.text);
      return { response };
    },
  },
  "POST /v1/oauth/revoke": {
    async perform(server) {
      const token = await accessToken(server, await freshService(server));
      const response = await server.form(
        "/v1/oauth/revoke",
        { token },
        { authorization: `Bearer ${server.rootToken}` },
      );
      return { response };
    },
  },
};

interface AuditRow {
  seq: number;
  type: string;
  outcome: string;
  request_id: string | null;
  error_code: string | null;
}

async function recordsOf(server: ComposedServer, requestId: string): Promise<AuditRow[]> {
  return server.storage.db
    .selectFrom("audit_events")
    .select(["seq", "type", "outcome", "request_id", "error_code"])
    .where("request_id", "=", requestId)
    .orderBy("seq")
    .execute();
}

/** True when a 2xx response of the operation declares a field that carries a credential. */
function handsOutCredential(operation: Operation): boolean {
  const schemas = Object.entries(operation.responses ?? {})
    .filter(([status]) => status.startsWith("2"))
    .flatMap(([, response]) => Object.values(response.content ?? {}).map((media) => media.schema));
  return schemas.some((schema) => declaresField(schema, CREDENTIAL_FIELDS));
}

function declaresField(schema: unknown, names: ReadonlySet<string>): boolean {
  if (typeof schema !== "object" || schema === null) return false;
  const properties = (schema as { properties?: Record<string, unknown> }).properties ?? {};
  if (Object.keys(properties).some((name) => names.has(name))) return true;
  return Object.values(schema).some((child) => declaresField(child, names));
}

describe("audit event of every route", () => {
  let server: ComposedServer;
  /** `METHOD /path` of each route that must write an event, with its declared event type. */
  let audited: Map<string, string | null | undefined>;
  let operations: Map<string, Operation>;

  before(async () => {
    server = await openComposedServer();
    const document = await server.call<{ paths: Record<string, Record<string, Operation>> }>(
      "GET",
      "/v1/openapi.json",
      undefined,
      { token: null },
    );
    assert.equal(document.status, 200, document.text);
    audited = new Map();
    operations = new Map();
    for (const [path, item] of Object.entries(document.body.paths)) {
      for (const method of HTTP_METHODS) {
        const operation = item[method];
        if (operation === undefined) continue;
        operations.set(`${method.toUpperCase()} ${path}`, operation);
        const event = operation["x-arbor-audit-event"];
        const changesState = method !== "get";
        if (changesState || typeof event === "string" || handsOutCredential(operation)) {
          audited.set(`${method.toUpperCase()} ${path}`, event);
        }
      }
    }
  });

  after(async () => {
    await server.close();
  });

  test("credential detector finds known issuing routes", () => {
    // The detector decides which GET routes count as handing out a credential; it must at least
    // recognise the POST routes that do.
    for (const route of [
      "POST /v1/sys/init",
      "POST /v1/keys/{key}/data-key",
      "POST /v1/operator/tokens",
      "POST /v1/services",
      "POST /v1/oauth/token",
    ]) {
      const operation = operations.get(route);
      assert.ok(operation !== undefined, `${route} is missing from the API document`);
      assert.equal(handsOutCredential(operation), true, route);
    }
    assert.equal(handsOutCredential(operations.get("GET /v1/keys")!), false);
  });

  test("route table matches the audited routes", () => {
    const documented = [...audited.keys()].sort();
    const tabled = Object.keys(ROUTES).sort();
    const untested = documented.filter((route) => !(route in ROUTES));
    const stale = tabled.filter((route) => !audited.has(route));
    assert.deepEqual(
      untested,
      [],
      `routes that change state or hand out a credential without an entry in ROUTES: ${untested.join(", ")}`,
    );
    assert.deepEqual(stale, [], `ROUTES lists routes the API no longer has: ${stale.join(", ")}`);
    assert.ok(documented.length >= 25, `only ${documented.length} audited routes found`);
  });

  for (const [route, entry] of Object.entries(ROUTES)) {
    if ("exempt" in entry) {
      test(`${route} writes its event`, { skip: entry.exempt }, () => undefined);
      continue;
    }
    test(`${route} writes its event`, async () => {
      const declared = audited.get(route);
      assert.equal(typeof declared, "string", `${route} declares no x-arbor-audit-event`);

      const { response, server: own } = await entry.perform(server);
      try {
        assert.ok(
          response.status >= 200 && response.status < 300,
          `${route}: ${response.status} ${response.text}`,
        );
        assert.match(response.requestId, /\S/, `${route} returned no ${"x-request-id"} header`);

        const records = await recordsOf(own ?? server, response.requestId);
        const matching = records.filter(
          (row) => row.type === declared && row.outcome === "success",
        );
        assert.equal(
          matching.length >= 1,
          true,
          `${route}: no successful ${declared} record with request id ${response.requestId}; found ${JSON.stringify(records)}`,
        );
        for (const row of matching) assert.equal(row.error_code, null, JSON.stringify(row));
      } finally {
        await own?.close();
      }
    });
  }

  const failures: Array<{
    route: string;
    status: number;
    code: string;
    perform: (server: ComposedServer) => Promise<HttpResult>;
  }> = [
    {
      route: "POST /v1/keys",
      status: 400,
      code: "INVALID_PATH",
      perform: (s) => s.call("POST", "/v1/keys", { path: "Not A Path" }),
    },
    {
      route: "POST /v1/keys/{key}/rotate",
      status: 404,
      code: "KEY_NOT_FOUND",
      perform: (s) => s.call("POST", `/v1/keys/${keyParam("nowhere/x:encrypt")}/rotate`, {}),
    },
    {
      route: "POST /v1/keys/{key}/data-key",
      status: 404,
      code: "KEY_NOT_FOUND",
      perform: (s) => s.call("POST", `/v1/keys/${keyParam("nowhere/x:encrypt")}/data-key`, {}),
    },
    {
      route: "POST /v1/keys/{key}/encrypt",
      status: 400,
      code: "UNSUPPORTED_FIELD",
      perform: async (s) =>
        s.call("POST", `/v1/keys/${keyParam(await freshEncryptKey(s))}/encrypt`, {
          plaintext: "cGF5bG9hZA==",
          nonce: "AAAAAAAAAAAAAAAA",
        }),
    },
    {
      route: "POST /v1/decrypt",
      status: 400,
      code: "DECRYPTION_FAILED",
      perform: (s) => s.call("POST", "/v1/decrypt", { ciphertext: "arbor:v1:AAAA" }),
    },
    {
      route: "POST /v1/oauth/token",
      status: 401,
      code: "UNAUTHENTICATED",
      perform: async (s) => {
        const service = await freshService(s);
        return s.form(
          "/v1/oauth/token",
          { grant_type: "client_credentials" },
          basicAuth(service.id, "arbor_cs_wrong"),
        );
      },
    },
  ];

  for (const failure of failures) {
    test(`${failure.route} failure writes its error code`, async () => {
      const declared = audited.get(failure.route);
      assert.equal(typeof declared, "string", `${failure.route} declares no audit event`);

      const response = await failure.perform(server);
      assert.equal(response.status, failure.status, response.text);
      const records = await recordsOf(server, response.requestId);
      assert.deepEqual(
        records.map((row) => [row.type, row.outcome, row.error_code]),
        [[declared, "failure", failure.code]],
        `records of request ${response.requestId}`,
      );
    });
  }
});
