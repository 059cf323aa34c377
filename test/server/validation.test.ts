import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import type { FastifyInstance, InjectOptions } from "fastify";

import {
  assertError,
  bearer,
  openUnsealedServer,
  TEST_LIMITS,
  type Initialised,
  type ServerHarness,
} from "./harness.ts";

const SERVICE_KEY = encodeURIComponent("prod/acme/billing:encrypt");

describe("request validation", () => {
  let harness: ServerHarness & Initialised;
  let app: FastifyInstance;
  let root: Record<string, string>;

  /** Everything a rejected request could have changed: the keys with their versions, and the audit log's issuances. */
  async function snapshot(): Promise<string> {
    const keys = await app.inject({ method: "GET", url: "/v1/keys", headers: root });
    assert.equal(keys.statusCode, 200, keys.body);
    const issuances = await harness.storage.db.selectFrom("issuances").selectAll().execute();
    return JSON.stringify({ keys: keys.json(), issuances });
  }

  /** Sends `request`, asserts the error, and asserts that nothing changed. */
  async function rejectsWithoutChange(
    request: InjectOptions,
    status: number,
    code: string,
    parameter?: string,
  ) {
    const before = await snapshot();
    const response = await app.inject({ ...request, headers: { ...root, ...request.headers } });
    const error = assertError(response, status, code, parameter);
    assert.equal(await snapshot(), before, `${code}: state changed`);
    return { response, error };
  }

  before(async () => {
    harness = await openUnsealedServer();
    app = harness.app;
    root = bearer(harness.rootToken);
    for (const path of ["prod", "prod/acme", "prod/acme/billing:encrypt"]) {
      const response = await app.inject({
        method: "POST",
        url: "/v1/keys",
        headers: root,
        payload: { path },
      });
      assert.equal(response.statusCode, 201, response.body);
    }
  });

  after(async () => {
    await harness.close();
  });

  test("undeclared query parameters are rejected", async () => {
    await rejectsWithoutChange(
      { method: "GET", url: `/v1/keys/${SERVICE_KEY}?foo=1` },
      400,
      "UNSUPPORTED_FIELD",
      "foo",
    );
    await rejectsWithoutChange(
      { method: "GET", url: "/v1/sys/seal-status?foo=1" },
      400,
      "UNSUPPORTED_FIELD",
      "foo",
    );
    const { error } = await rejectsWithoutChange(
      {
        method: "POST",
        url: `/v1/keys/${SERVICE_KEY}/encrypt?nonce=AAAA`,
        payload: { plaintext: Buffer.from("x").toString("base64") },
      },
      400,
      "UNSUPPORTED_FIELD",
      "nonce",
    );
    assert.match(error.message, /nonce/);
    await rejectsWithoutChange(
      { method: "GET", url: "/v1/keys?prefix=prod&bogus=1" },
      400,
      "UNSUPPORTED_FIELD",
    );
  });

  test("malformed JSON is rejected", async () => {
    const { error } = await rejectsWithoutChange(
      {
        method: "POST",
        url: "/v1/keys",
        headers: { "content-type": "application/json" },
        payload: '{"path": "prod/x", ',
      },
      400,
      "INVALID_ARGUMENT",
      "body",
    );
    assert.equal(error.message, "the request body is not valid JSON");
  });

  test("prototype pollution is rejected", async () => {
    await rejectsWithoutChange(
      {
        method: "POST",
        url: "/v1/keys",
        headers: { "content-type": "application/json" },
        payload: '{"path": "prod/x", "__proto__": {"admin": true}}',
      },
      400,
      "INVALID_ARGUMENT",
      "body",
    );
  });

  test("non-JSON body is rejected", async () => {
    await rejectsWithoutChange(
      {
        method: "POST",
        url: "/v1/keys",
        headers: { "content-type": "text/plain" },
        payload: "path=prod/x",
      },
      400,
      "INVALID_ARGUMENT",
      "content-type",
    );
  });

  test("body must be an object", async () => {
    await rejectsWithoutChange(
      { method: "POST", url: "/v1/keys", payload: [{ path: "prod/x" }] },
      400,
      "INVALID_ARGUMENT",
      "body",
    );
  });

  test("unknown field is named", async () => {
    const { error } = await rejectsWithoutChange(
      { method: "POST", url: "/v1/keys", payload: { path: "prod/acme/x:encrypt", owner: "me" } },
      400,
      "UNSUPPORTED_FIELD",
      "owner",
    );
    assert.match(error.message, /"owner"/);
    assert.match(error.message, /"path"/, "the message lists the accepted fields");
  });

  test("unknown field wins over missing field", async () => {
    await rejectsWithoutChange(
      { method: "POST", url: "/v1/keys", payload: { owner: "me" } },
      400,
      "UNSUPPORTED_FIELD",
      "owner",
    );
  });

  test("missing field is named", async () => {
    const { error } = await rejectsWithoutChange(
      { method: "POST", url: "/v1/keys", payload: {} },
      400,
      "INVALID_ARGUMENT",
      "path",
    );
    assert.match(error.message, /missing required field "path"/);
  });

  test("wrong type is named with its value", async () => {
    const { error } = await rejectsWithoutChange(
      { method: "POST", url: "/v1/keys", payload: { path: "prod/acme/x:encrypt", mode: "fancy" } },
      400,
      "INVALID_ARGUMENT",
      "mode",
    );
    assert.equal(error.value, "fancy");
    assert.match(error.message, /"wrapped", "derived"/);
  });

  test("numbers are not coerced from strings", async () => {
    await rejectsWithoutChange(
      {
        method: "PUT",
        url: `/v1/keys/${SERVICE_KEY}/min-decryption-version`,
        payload: { version: "1" },
      },
      400,
      "INVALID_ARGUMENT",
      "version",
    );
  });

  test("nested unknown field is named", async () => {
    await rejectsWithoutChange(
      {
        method: "POST",
        url: `/v1/keys/${SERVICE_KEY}/encrypt`,
        payload: { plaintext: "aGVsbG8=", context: { tenant: 7 } },
      },
      400,
      "INVALID_ARGUMENT",
      "context.tenant",
    );
  });

  for (const field of ["nonce", "iv"]) {
    test(`encrypt rejects a caller ${field}`, async () => {
      const fixed = Buffer.alloc(12, 7).toString("base64");
      const messages: string[] = [];
      for (const plaintext of ["first message", "second message"]) {
        const { error } = await rejectsWithoutChange(
          {
            method: "POST",
            url: `/v1/keys/${SERVICE_KEY}/encrypt`,
            payload: { plaintext: Buffer.from(plaintext).toString("base64"), [field]: fixed },
          },
          400,
          "UNSUPPORTED_FIELD",
          field,
        );
        assert.equal(error.value, undefined, "the nonce value must not be echoed");
        messages.push(error.message);
      }
      assert.match(messages[0]!, /generates every nonce/);
      assert.equal(messages[0], messages[1]);
    });
  }

  test("data key route rejects a nonce", async () => {
    await rejectsWithoutChange(
      { method: "POST", url: `/v1/keys/${SERVICE_KEY}/data-key`, payload: { nonce: "AAAA" } },
      400,
      "UNSUPPORTED_FIELD",
      "nonce",
    );
  });

  test("nonce is reported before other errors", async () => {
    await rejectsWithoutChange(
      { method: "POST", url: `/v1/keys/${SERVICE_KEY}/encrypt`, payload: { iv: "AAAA", extra: 1 } },
      400,
      "UNSUPPORTED_FIELD",
      "iv",
    );
  });

  test("rejected nonce requests are audited", () => {
    const rejected = harness.audit
      .ofType("crypto.encrypt")
      .filter((event) => event.errorCode === "UNSUPPORTED_FIELD");
    assert.ok(rejected.length >= 4, `only ${rejected.length} rejected encrypt events`);
    for (const event of rejected) assert.equal(event.outcome, "failure");
  });

  test("oversized body is rejected", async () => {
    await rejectsWithoutChange(
      {
        method: "POST",
        url: `/v1/keys/${SERVICE_KEY}/encrypt`,
        payload: { plaintext: "A".repeat(TEST_LIMITS.maxBodyBytes) },
      },
      413,
      "PAYLOAD_TOO_LARGE",
      "body",
    );
  });

  test("oversized plaintext is rejected", async () => {
    const plaintext = Buffer.alloc(TEST_LIMITS.maxPayloadBytes + 1, 1).toString("base64");
    const { error } = await rejectsWithoutChange(
      { method: "POST", url: `/v1/keys/${SERVICE_KEY}/encrypt`, payload: { plaintext } },
      413,
      "PAYLOAD_TOO_LARGE",
      "plaintext",
    );
    assert.match(error.message, new RegExp(`${TEST_LIMITS.maxPayloadBytes} bytes`));
  });

  test("plaintext at the limit is accepted", async () => {
    const plaintext = Buffer.alloc(TEST_LIMITS.maxPayloadBytes, 1).toString("base64");
    const response = await app.inject({
      method: "POST",
      url: `/v1/keys/${SERVICE_KEY}/encrypt`,
      headers: root,
      payload: { plaintext },
    });
    assert.equal(response.statusCode, 200, response.body);
  });

  for (const [label, plaintext] of [
    ["bad alphabet", "aGVs*G8="],
    ["missing padding", "aGVsbG8"],
    ["url alphabet", "_-__"],
    ["non-zero trailing bits", "aGVsbG9="],
    ["whitespace", "aGVs bG8="],
  ] as const) {
    test(`base64 with ${label} is rejected`, async () => {
      const { error } = await rejectsWithoutChange(
        { method: "POST", url: `/v1/keys/${SERVICE_KEY}/encrypt`, payload: { plaintext } },
        400,
        "INVALID_ARGUMENT",
        "plaintext",
      );
      assert.equal(error.value, undefined, "a plaintext must never be echoed");
    });
  }

  test("unknown route is not found", async () => {
    const response = await app.inject({ method: "GET", url: "/v1/secrets?x=1", headers: root });
    const error = assertError(response, 404, "NOT_FOUND", "url");
    assert.equal(error.value, "/v1/secrets");
  });

  test("error body has exactly the documented fields", async () => {
    const response = await app.inject({
      method: "POST",
      url: "/v1/keys",
      headers: root,
      payload: {},
    });
    const body = response.json<Record<string, unknown>>();
    assert.deepEqual(Object.keys(body), ["error"]);
    assert.deepEqual(Object.keys(body.error as object).sort(), [
      "code",
      "message",
      "parameter",
      "requestId",
    ]);
    assert.match(response.headers["content-type"] as string, /^application\/json/);
    assert.equal(response.headers["cache-control"], "no-store");
  });

  test("caller request id is echoed", async () => {
    const response = await app.inject({
      method: "GET",
      url: "/v1/keys/prod%2Fnobody",
      headers: { ...root, "x-request-id": "trace.42_A-b" },
    });
    assert.equal(response.headers["x-request-id"], "trace.42_A-b");
    assert.equal(assertError(response, 404, "KEY_NOT_FOUND").requestId, "trace.42_A-b");
  });

  test("unsafe request id is replaced", async () => {
    for (const sent of ["bad id with spaces", "x".repeat(65), 'quote"', ""]) {
      const response = await app.inject({
        method: "GET",
        url: "/v1/sys/health",
        headers: { "x-request-id": sent },
      });
      const echoed = response.headers["x-request-id"] as string;
      assert.notEqual(echoed, sent);
      assert.match(echoed, /^req_[a-z2-7]{26}$/);
    }
  });

  test("database errors never reach the client", async () => {
    const { keyTree } = harness.deps;
    const original = keyTree.listKeys;
    keyTree.listKeys = () =>
      Promise.reject(
        Object.assign(new Error("SQLITE_ERROR: no such column: secret_value in SELECT ..."), {
          code: "SQLITE_ERROR",
        }),
      );
    try {
      const response = await app.inject({ method: "GET", url: "/v1/keys", headers: root });
      const error = assertError(response, 500, "INTERNAL");
      assert.ok(!response.body.includes("SQLITE"), response.body);
      assert.ok(!response.body.includes("secret_value"), response.body);
      assert.match(error.message, /request id/);
    } finally {
      keyTree.listKeys = original;
    }

    const logged = harness.logs
      .records()
      .find((record) => record.errorCode === "INTERNAL" && record.route === "/v1/keys");
    assert.ok(logged, "the 500 was not logged");
    assert.equal(logged.level, 50, "a 500 is logged at error level");
    assert.match(JSON.stringify(logged.err), /no such column/, "the full error is in the log");
  });

  test("busy database is unavailable", async () => {
    const { keyTree } = harness.deps;
    const original = keyTree.listKeys;
    keyTree.listKeys = () =>
      Promise.reject(Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" }));
    try {
      const response = await app.inject({ method: "GET", url: "/v1/keys", headers: root });
      assertError(response, 503, "STORAGE_UNAVAILABLE");
      assert.ok(!response.body.includes("locked"), response.body);
    } finally {
      keyTree.listKeys = original;
    }
  });

  test("4xx responses are logged at info", async () => {
    const response = await app.inject({
      method: "GET",
      url: "/v1/keys/prod%2Fnobody",
      headers: { ...root, "x-request-id": "info-level-check" },
    });
    assert.equal(response.statusCode, 404);
    const logged = harness.logs.records().find((record) => record.reqId === "info-level-check");
    assert.ok(logged, "no log line for the request");
    assert.equal(logged.level, 30);
    assert.equal(logged.errorCode, "KEY_NOT_FOUND");
  });
});
