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

interface TokenInfo {
  id: string;
  name: string;
  environment: string | null;
  tenant: string | null;
  readOnly: boolean;
  root: boolean;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
}

describe("operator token routes", () => {
  let harness: ServerHarness & Initialised;
  let app: FastifyInstance;
  let root: Record<string, string>;

  before(async () => {
    harness = await openUnsealedServer();
    app = harness.app;
    root = bearer(harness.rootToken);
  });

  after(async () => {
    await harness.close();
  });

  test("create shows the token once", async () => {
    const response = await app.inject({
      method: "POST",
      url: "/v1/operator/tokens",
      headers: root,
      payload: { name: "deploy bot", ttl: "12h", environment: "prod", readOnly: true },
    });
    assert.equal(response.statusCode, 201, response.body);
    const created = response.json<TokenInfo & { token: string }>();
    assert.match(created.token, /^arbor_op_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}$/);
    assert.match(created.id, /^opt_[a-z2-7]{26}$/);
    assert.equal(created.environment, "prod");
    assert.equal(created.readOnly, true);
    assert.equal(created.root, false);
    assert.equal(Date.parse(created.expiresAt!) - Date.parse(created.createdAt), 12 * 3_600_000);

    const listed = await app.inject({ method: "GET", url: "/v1/operator/tokens", headers: root });
    assert.equal(listed.statusCode, 200, listed.body);
    const tokens = listed.json<{ tokens: TokenInfo[] }>().tokens;
    assert.ok(tokens.some((token) => token.id === created.id));
    assert.ok(tokens.some((token) => token.root));
    assert.ok(!listed.body.includes(created.token), "a listed token must not include its secret");

    const [event] = harness.audit
      .ofType("operator_token.created")
      .filter((e) => e.credentialId === created.id);
    assert.ok(event, "no operator_token.created event");
    assert.ok(!JSON.stringify(event).includes(created.token), "the secret is in the event");
  });

  test("ttl accepts whole seconds", async () => {
    const response = await app.inject({
      method: "POST",
      url: "/v1/operator/tokens",
      headers: root,
      payload: { name: "short", ttl: 600 },
    });
    assert.equal(response.statusCode, 201, response.body);
    const created = response.json<TokenInfo>();
    assert.equal(Date.parse(created.expiresAt!) - Date.parse(created.createdAt), 600_000);
  });

  test("revoked token stops working", async () => {
    const created = (
      await app.inject({
        method: "POST",
        url: "/v1/operator/tokens",
        headers: root,
        payload: { name: "temporary" },
      })
    ).json<TokenInfo & { token: string }>();
    const works = await app.inject({
      method: "GET",
      url: "/v1/keys",
      headers: bearer(created.token),
    });
    assert.equal(works.statusCode, 200, works.body);

    const revoked = await app.inject({
      method: "DELETE",
      url: `/v1/operator/tokens/${created.id}`,
      headers: root,
    });
    assert.equal(revoked.statusCode, 200, revoked.body);
    assert.equal(revoked.json<{ id: string }>().id, created.id);
    assert.match(revoked.json<{ revokedAt: string }>().revokedAt, /Z$/);

    const rejected = await app.inject({
      method: "GET",
      url: "/v1/keys",
      headers: bearer(created.token),
    });
    assertError(rejected, 401, "UNAUTHENTICATED");
    assert.equal(harness.audit.ofType("operator_token.revoked").length, 1);

    const failure = harness.audit.ofType("auth.failed").at(-1);
    assert.equal(failure?.details.reason, "revoked");
    assert.equal(failure?.details.tokenId, created.id);
    assert.ok(!JSON.stringify(failure).includes(created.token), "the secret is in the event");
  });

  test("scoped token cannot widen its reach", async () => {
    const scoped = (
      await app.inject({
        method: "POST",
        url: "/v1/operator/tokens",
        headers: root,
        payload: { name: "prod admin", environment: "prod" },
      })
    ).json<{ token: string }>();
    const response = await app.inject({
      method: "POST",
      url: "/v1/operator/tokens",
      headers: bearer(scoped.token),
      payload: { name: "escalated", environment: null },
    });
    assertError(response, 403, "FORBIDDEN");
  });

  test("invalid create bodies are rejected", async () => {
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{}, "INVALID_ARGUMENT", "name"],
      [{ name: "x", ttl: "forever" }, "INVALID_ARGUMENT", "ttl"],
      [{ name: "x", environment: "Prod" }, "INVALID_ARGUMENT", "environment"],
      [{ name: "x", token: "arbor_op_mine" }, "UNSUPPORTED_FIELD", "token"],
    ];
    for (const [payload, code, parameter] of cases) {
      const response = await app.inject({
        method: "POST",
        url: "/v1/operator/tokens",
        headers: root,
        payload,
      });
      assertError(response, 400, code, parameter);
    }
  });

  test("unknown token id is not found", async () => {
    const response = await app.inject({
      method: "DELETE",
      url: `/v1/operator/tokens/opt_${"a".repeat(26)}`,
      headers: root,
    });
    assertError(response, 404, "NOT_FOUND");
  });
});
