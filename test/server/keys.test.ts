import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import type { FastifyInstance } from "fastify";

import {
  assertError,
  bearer,
  openUnsealedServer,
  type Initialised,
  type ServerHarness,
} from "./harness.ts";

interface Version {
  version: number;
  state: string;
  parentKeyId: string;
  parentVersion: number;
  createdAt: string;
  activateAt: string | null;
  retireAt: string | null;
  publicJwk: Record<string, unknown> | null;
}

interface Key {
  id: string;
  path: string;
  kind: string;
  environment: string;
  tenant: string;
  purpose: string;
  mode: string;
  algorithm: string;
  parentId: string | null;
  rotationPeriod: string | null;
  primaryVersion: number | null;
  minDecryptionVersion: number;
  createdAt: string;
  versions: Version[];
}

interface TreeNode {
  path: string;
  children: TreeNode[];
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** Creates an operator token through the API and returns its secret. */
async function createToken(
  app: FastifyInstance,
  rootToken: string,
  payload: Record<string, unknown>,
): Promise<string> {
  const response = await app.inject({
    method: "POST",
    url: "/v1/operator/tokens",
    headers: bearer(rootToken),
    payload,
  });
  assert.equal(response.statusCode, 201, response.body);
  return response.json<{ token: string }>().token;
}

describe("key routes", () => {
  let harness: ServerHarness & Initialised;
  let app: FastifyInstance;
  let root: Record<string, string>;

  async function create(path: string, extra: Record<string, unknown> = {}): Promise<Key> {
    const response = await app.inject({
      method: "POST",
      url: "/v1/keys",
      headers: root,
      payload: { path, ...extra },
    });
    assert.equal(response.statusCode, 201, response.body);
    return response.json<Key>();
  }

  before(async () => {
    harness = await openUnsealedServer();
    app = harness.app;
    root = bearer(harness.rootToken);
    await create("prod");
    await create("prod/acme");
    await create("prod/globex");
    await create("stage");
  });

  after(async () => {
    await harness.close();
  });

  test("create returns the key", async () => {
    const key = await create("prod/acme/billing:encrypt", { rotationPeriod: "90d" });
    assert.match(key.id, /^key_[a-z2-7]{26}$/);
    assert.equal(key.path, "prod/acme/billing:encrypt");
    assert.equal(key.kind, "service");
    assert.equal(key.environment, "prod");
    assert.equal(key.tenant, "acme");
    assert.equal(key.purpose, "encrypt");
    assert.equal(key.mode, "wrapped");
    assert.equal(key.rotationPeriod, "90d");
    assert.equal(key.primaryVersion, 1);
    assert.match(key.createdAt, RFC3339);
    assert.equal(key.versions.length, 1);
    assert.match(key.versions[0]!.createdAt, RFC3339);

    const [event] = harness.audit.ofType("key.created").filter((e) => e.keyId === key.id);
    assert.ok(event, "no key.created event");
    assert.equal(event.outcome, "success");
    assert.equal(event.keyVersion, 1);
    // A key change names one step of the chain, the parent version and the new version;
    // `arbor audit trace` follows the steps up to the root.
    const parent = await harness.deps.keyTree.resolveKey("prod/acme");
    assert.deepEqual(event.chain, [`${parent.id}@1`, `${key.id}@1`]);
    assert.equal(event.principal.type, "operator");
    assert.ok(event.requestId, "the in-transaction event names the request");
  });

  test("create takes durations as seconds", async () => {
    const key = await create("prod/acme/reports:encrypt", { rotationPeriod: 3600 });
    assert.equal(key.rotationPeriod, "1h");
  });

  test("create rejects a used path", async () => {
    const response = await app.inject({
      method: "POST",
      url: "/v1/keys",
      headers: root,
      payload: { path: "prod" },
    });
    assertError(response, 409, "PATH_IN_USE", "path");
    const failures = harness.audit
      .ofType("key.created")
      .filter((event) => event.errorCode === "PATH_IN_USE");
    assert.equal(failures.length, 1);
  });

  test("create rejects an invalid path", async () => {
    const response = await app.inject({
      method: "POST",
      url: "/v1/keys",
      headers: root,
      payload: { path: "Prod/ACME" },
    });
    const error = assertError(response, 400, "INVALID_PATH", "path");
    assert.equal(error.value, "Prod/ACME");
  });

  test("create rejects a bad duration", async () => {
    const response = await app.inject({
      method: "POST",
      url: "/v1/keys",
      headers: root,
      payload: { path: "prod/acme/bad:encrypt", rotationPeriod: "ninety days" },
    });
    assertError(response, 400, "INVALID_ARGUMENT", "rotationPeriod");
  });

  test("show accepts id and path", async () => {
    const created = await create("prod/acme/ledger:sign", { algorithm: "ES256" });
    const byId = await app.inject({ method: "GET", url: `/v1/keys/${created.id}`, headers: root });
    assert.equal(byId.statusCode, 200, byId.body);
    assert.equal(byId.json<Key>().algorithm, "ES256");
    assert.ok(byId.json<Key>().versions[0]!.publicJwk, "a sign version has a public JWK");

    const byPath = await app.inject({
      method: "GET",
      url: `/v1/keys/${encodeURIComponent("prod/acme/ledger:sign")}`,
      headers: root,
    });
    assert.equal(byPath.statusCode, 200, byPath.body);
    assert.equal(byPath.json<Key>().id, created.id);

    const missing = await app.inject({
      method: "GET",
      url: `/v1/keys/${encodeURIComponent("prod/nobody")}`,
      headers: root,
    });
    assertError(missing, 404, "KEY_NOT_FOUND", "key");
  });

  test("list filters by prefix and scope", async () => {
    const all = await app.inject({ method: "GET", url: "/v1/keys", headers: root });
    assert.equal(all.statusCode, 200, all.body);
    const paths = all.json<{ keys: Key[] }>().keys.map((key) => key.path);
    assert.ok(paths.includes("stage"));
    assert.ok(paths.includes("prod/acme"));

    const prefixed = await app.inject({
      method: "GET",
      url: "/v1/keys?prefix=prod%2Facme",
      headers: root,
    });
    for (const key of prefixed.json<{ keys: Key[] }>().keys) {
      assert.ok(key.path.startsWith("prod/acme"), key.path);
    }

    const tenantLevel = await app.inject({
      method: "GET",
      url: "/v1/keys?environment=prod&tenant=-",
      headers: root,
    });
    assert.deepEqual(
      tenantLevel.json<{ keys: Key[] }>().keys.map((key) => key.path),
      ["prod"],
    );

    const unknown = await app.inject({ method: "GET", url: "/v1/keys?owner=me", headers: root });
    assertError(unknown, 400, "UNSUPPORTED_FIELD", "owner");
  });

  test("tree nests keys", async () => {
    const response = await app.inject({ method: "GET", url: "/v1/keys/tree", headers: root });
    assert.equal(response.statusCode, 200, response.body);
    const tree = response.json<{ tree: TreeNode[] }>().tree;
    const prod = tree.find((node) => node.path === "prod");
    assert.ok(prod, "prod is a root of the tree");
    const acme = prod.children.find((node) => node.path === "prod/acme");
    assert.ok(acme, "prod/acme is under prod");
    assert.ok(acme.children.some((node) => node.path === "prod/acme/billing:encrypt"));
  });

  test("version lifecycle", async () => {
    const key = await create("prod/acme/orders:encrypt");
    const url = `/v1/keys/${key.id}`;

    const rotated = await app.inject({ method: "POST", url: `${url}/rotate`, headers: root });
    assert.equal(rotated.statusCode, 200, rotated.body);
    assert.equal(rotated.json<Version>().version, 2);
    assert.equal(rotated.json<Version>().state, "primary");

    const pending = await app.inject({
      method: "POST",
      url: `${url}/rotate`,
      headers: root,
      payload: { publishDelay: "15m" },
    });
    assert.equal(pending.json<Version>().version, 3);
    assert.equal(pending.json<Version>().state, "pending");
    assert.equal(
      Date.parse(pending.json<Version>().activateAt!) -
        Date.parse(pending.json<Version>().createdAt),
      15 * 60_000,
    );

    const disabled = await app.inject({
      method: "POST",
      url: `${url}/versions/1/disable`,
      headers: root,
    });
    assert.equal(disabled.statusCode, 200, disabled.body);
    assert.equal(disabled.json<Version>().state, "disabled");

    const enabled = await app.inject({
      method: "POST",
      url: `${url}/versions/1/enable`,
      headers: root,
    });
    assert.equal(enabled.json<Version>().state, "active");

    const minimum = await app.inject({
      method: "PUT",
      url: `${url}/min-decryption-version`,
      headers: root,
      payload: { version: 2 },
    });
    assert.equal(minimum.statusCode, 200, minimum.body);
    assert.deepEqual(minimum.json(), { minDecryptionVersion: 2 });

    const revoked = await app.inject({
      method: "POST",
      url: `${url}/versions/1/revoke`,
      headers: root,
    });
    assert.equal(revoked.json<Version>().state, "revoked");

    const again = await app.inject({
      method: "POST",
      url: `${url}/versions/1/enable`,
      headers: root,
    });
    assertError(again, 409, "KEY_STATE_CONFLICT", "version");

    const reloaded = (await app.inject({ method: "GET", url, headers: root })).json<Key>();
    assert.equal(reloaded.minDecryptionVersion, 2);
    assert.deepEqual(
      reloaded.versions.map((version) => version.state),
      ["revoked", "primary", "pending"],
    );

    const events = harness.audit.events.filter((event) => event.keyId === key.id);
    assert.deepEqual(
      events.map((event) => `${event.type}:${event.outcome}`),
      [
        "key.created:success",
        "key.rotated:success",
        "key.rotated:success",
        "key.version_disabled:success",
        "key.version_enabled:success",
        "key.min_decryption_version_set:success",
        "key.version_revoked:success",
        "key.version_enabled:failure",
      ],
    );
    assert.equal(events[1]!.chain.at(-1), `${key.id}@2`);
  });

  test("version parameter must be a number", async () => {
    const response = await app.inject({
      method: "POST",
      url: "/v1/keys/prod/versions/first/disable",
      headers: root,
    });
    const error = assertError(response, 400, "INVALID_ARGUMENT", "version");
    assert.equal(error.value, "first");
  });

  test("unknown version is not found", async () => {
    const response = await app.inject({
      method: "POST",
      url: "/v1/keys/prod/versions/99/disable",
      headers: root,
    });
    assertError(response, 404, "KEY_VERSION_NOT_FOUND", "version");
  });

  test("scoped token sees only its scope", async () => {
    const acmeToken = await createToken(app, harness.rootToken, {
      name: "acme admin",
      environment: "prod",
      tenant: "acme",
    });
    const acme = bearer(acmeToken);

    const listed = await app.inject({ method: "GET", url: "/v1/keys", headers: acme });
    const paths = listed.json<{ keys: Key[] }>().keys.map((key) => key.path);
    assert.ok(paths.length > 0);
    for (const path of paths) assert.ok(path.startsWith("prod/acme"), path);

    const across = await app.inject({
      method: "GET",
      url: "/v1/keys?environment=stage",
      headers: acme,
    });
    assert.deepEqual(across.json<{ keys: Key[] }>().keys, []);

    const globex = await app.inject({
      method: "GET",
      url: `/v1/keys/${encodeURIComponent("prod/globex")}`,
      headers: acme,
    });
    const missing = await app.inject({
      method: "GET",
      url: `/v1/keys/${encodeURIComponent("prod/initech")}`,
      headers: acme,
    });
    const hidden = assertError(globex, 404, "KEY_NOT_FOUND", "key");
    const absent = assertError(missing, 404, "KEY_NOT_FOUND", "key");
    assert.equal(
      hidden.message.replace("globex", "X"),
      absent.message.replace("initech", "X"),
      "a key in another tenant must look exactly like a missing key",
    );

    const rotateOther = await app.inject({
      method: "POST",
      url: `/v1/keys/${encodeURIComponent("prod/globex")}/rotate`,
      headers: acme,
    });
    assertError(rotateOther, 404, "KEY_NOT_FOUND");

    const createOther = await app.inject({
      method: "POST",
      url: "/v1/keys",
      headers: acme,
      payload: { path: "prod/globex/mail:encrypt" },
    });
    assertError(createOther, 403, "FORBIDDEN", "path");

    const createOwn = await app.inject({
      method: "POST",
      url: "/v1/keys",
      headers: acme,
      payload: { path: "prod/acme/mail:encrypt" },
    });
    assert.equal(createOwn.statusCode, 201, createOwn.body);
  });

  test("read-only token cannot change anything", async () => {
    const readOnly = bearer(
      await createToken(app, harness.rootToken, { name: "auditor", readOnly: true }),
    );
    const listed = await app.inject({ method: "GET", url: "/v1/keys", headers: readOnly });
    assert.equal(listed.statusCode, 200, listed.body);
    const before = listed.json<{ keys: Key[] }>().keys.length;

    const attempts = [
      { method: "POST", url: "/v1/keys", payload: { path: "prod/acme/ro:encrypt" } },
      { method: "POST", url: "/v1/keys/prod/rotate" },
      { method: "POST", url: "/v1/keys/prod/versions/1/revoke" },
      { method: "POST", url: "/v1/sys/seal" },
      { method: "POST", url: "/v1/operator/tokens", payload: { name: "escalate" } },
    ] as const;
    for (const attempt of attempts) {
      const response = await app.inject({ ...attempt, headers: readOnly });
      assertError(response, 403, "FORBIDDEN");
    }

    const after = await app.inject({ method: "GET", url: "/v1/keys", headers: readOnly });
    assert.equal(after.json<{ keys: Key[] }>().keys.length, before);
    assert.equal(harness.root.status().state, "unsealed");
    const prod = (
      await app.inject({ method: "GET", url: "/v1/keys/prod", headers: root })
    ).json<Key>();
    assert.equal(prod.versions.length, 1, "prod must not have been rotated");
    assert.ok(harness.audit.ofType("authz.denied").length >= attempts.length);
  });

  test("missing token is rejected and audited", async () => {
    const before = harness.audit.ofType("auth.failed").length;
    const response = await app.inject({ method: "GET", url: "/v1/keys" });
    assertError(response, 401, "UNAUTHENTICATED");
    assert.equal(response.headers["www-authenticate"], 'Bearer realm="arbor"');
    const malformed = await app.inject({
      method: "GET",
      url: "/v1/keys",
      headers: { authorization: "Basic dXNlcjpwYXNz" },
    });
    assertError(malformed, 401, "UNAUTHENTICATED");
    assert.equal(harness.audit.ofType("auth.failed").length, before + 2);
  });
});
