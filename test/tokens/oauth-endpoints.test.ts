import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { split } from "./forge.ts";
import {
  api,
  basic,
  createKeys,
  createService,
  introspect,
  obtainToken,
  openTokenServer,
  postForm,
  type CreatedService,
  type TokenHarness,
} from "./harness.ts";

interface OAuthError {
  error: string;
  error_description: string;
}

describe("OAuth endpoints", () => {
  let harness: TokenHarness;
  let acme: CreatedService;
  let globex: CreatedService;

  before(async () => {
    harness = await openTokenServer();
    await createKeys(harness, ["prod", "prod/acme", "prod/acme/billing:sign"]);
    await createKeys(harness, ["prod/globex", "prod/globex/billing:sign"]);
    acme = await createService(harness, {
      name: "acme",
      environment: "prod",
      tenant: "acme",
      service: "billing",
      audiences: ["https://a.example", "https://b.example", "urn:acme:ledger"],
      scopes: ["read", "write"],
    });
    globex = await createService(harness, {
      name: "globex",
      environment: "prod",
      tenant: "globex",
      service: "billing",
      audiences: ["https://a.example"],
    });
  });

  after(async () => {
    await harness.close();
  });

  /** Requests a token with acme's Basic credentials and a raw form body. */
  function tokenRequest(form: string, headers = basic(acme.id, acme.clientSecret)) {
    return postForm<OAuthError & { access_token?: string }>(
      harness,
      "/v1/oauth/token",
      form,
      headers,
    );
  }

  function assertOAuthError(
    response: { status: number; body: unknown },
    status: number,
    error: string,
    description?: RegExp,
  ): void {
    assert.equal(response.status, status, JSON.stringify(response.body));
    const body = response.body as OAuthError;
    assert.deepEqual(Object.keys(body).sort(), ["error", "error_description"]);
    assert.equal(body.error, error);
    assert.ok(body.error_description.length > 0);
    if (description !== undefined) assert.match(body.error_description, description);
  }

  test("token routes are declared in the API document", async () => {
    const response = await fetch(`${harness.base}/v1/openapi.json`);
    const document = (await response.json()) as {
      paths: Record<string, Record<string, Record<string, unknown>>>;
    };
    const operations = Object.entries(document.paths).flatMap(([path, item]) =>
      Object.entries(item).map(([method, operation]) => ({ method, path, operation })),
    );
    const publicRoutes = operations
      .filter(
        ({ operation }) => Array.isArray(operation.security) && operation.security.length === 0,
      )
      .map(({ method, path }) => `${method.toUpperCase()} ${path}`)
      .filter((route) => /oauth|issuers/.test(route))
      .sort();
    assert.deepEqual(publicRoutes, [
      "GET /.well-known/oauth-authorization-server/v1/issuers/{*}",
      "GET /v1/issuers/{*}",
      "POST /v1/oauth/introspect",
      "POST /v1/oauth/revoke",
      "POST /v1/oauth/token",
    ]);
    for (const { method, path, operation } of operations) {
      if (!/oauth|issuers|services/.test(path)) continue;
      assert.match(
        String(operation["x-arbor-action"]),
        /^[a-z_]+(\.[a-z_]+)+$/,
        `${method} ${path}`,
      );
      assert.ok("x-arbor-audit-event" in operation, `${method} ${path}`);
      if (method !== "get") {
        assert.equal(typeof operation["x-arbor-audit-event"], "string", `${method} ${path}`);
      }
    }
  });

  test("token response follows RFC 6749", async () => {
    const response = await tokenRequest("grant_type=client_credentials&scope=read");
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.headers.get("cache-control"), "no-store");
    assert.equal(response.headers.get("pragma"), "no-cache");
    assert.deepEqual(Object.keys(response.body).sort(), [
      "access_token",
      "expires_in",
      "scope",
      "token_type",
    ]);
    assert.equal((response.body as { token_type?: string }).token_type, "Bearer");
  });

  test("client_secret_post authenticates", async () => {
    const form = new URLSearchParams({
      grant_type: "client_credentials",
      client_id: acme.id,
      client_secret: acme.clientSecret,
    });
    const response = await postForm(harness, "/v1/oauth/token", form);
    assert.equal(response.status, 200, JSON.stringify(response.body));
  });

  test("request errors are invalid_request", async () => {
    assertOAuthError(await tokenRequest(""), 400, "invalid_request", /grant_type/);
    assertOAuthError(
      await tokenRequest("grant_type=client_credentials&scope=read&scope=write"),
      400,
      "invalid_request",
      /"scope" appears more than once/,
    );
    assertOAuthError(
      await tokenRequest("grant_type=client_credentials&grant_type=client_credentials"),
      400,
      "invalid_request",
      /"grant_type" appears more than once/,
    );
    const both = new URLSearchParams({
      grant_type: "client_credentials",
      client_secret: acme.clientSecret,
    });
    assertOAuthError(
      await tokenRequest(both.toString()),
      400,
      "invalid_request",
      /authenticates twice/,
    );

    const json = await fetch(`${harness.base}/v1/oauth/token`, {
      method: "POST",
      headers: { "content-type": "application/json", ...basic(acme.id, acme.clientSecret) },
      body: JSON.stringify({ grant_type: "client_credentials" }),
    });
    assertOAuthError(
      { status: json.status, body: await json.json() },
      400,
      "invalid_request",
      /x-www-form-urlencoded/,
    );
  });

  test("unknown and empty parameters are ignored", async () => {
    const response = await tokenRequest("grant_type=client_credentials&colour=blue&scope=&nonce=1");
    assert.equal(response.status, 200, JSON.stringify(response.body));
  });

  test("unsupported grant type is reported", async () => {
    assertOAuthError(
      await tokenRequest("grant_type=password&username=a&password=b"),
      400,
      "unsupported_grant_type",
      /"password"/,
    );
  });

  test("scope and audience are checked", async () => {
    assertOAuthError(
      await tokenRequest("grant_type=client_credentials&scope=admin"),
      400,
      "invalid_scope",
      /"admin"/,
    );
    assertOAuthError(
      await tokenRequest("grant_type=client_credentials&scope=read%20%20write"),
      400,
      "invalid_scope",
    );
    assertOAuthError(
      await tokenRequest("grant_type=client_credentials&resource=https%3A%2F%2Fother.example"),
      400,
      "invalid_target",
      /not allowed/,
    );
    assertOAuthError(
      await tokenRequest("grant_type=client_credentials&resource=not-a-uri"),
      400,
      "invalid_target",
      /absolute URI/,
    );
    assertOAuthError(
      await tokenRequest("grant_type=client_credentials&resource=https%3A%2F%2Fa.example%23frag"),
      400,
      "invalid_target",
    );
  });

  test("resource and audience may repeat", async () => {
    const form = new URLSearchParams([
      ["grant_type", "client_credentials"],
      ["resource", "https://a.example"],
      ["resource", "https://b.example"],
      ["audience", "urn:acme:ledger"],
    ]);
    const response = await tokenRequest(form.toString());
    assert.equal(response.status, 200, JSON.stringify(response.body));
    const { payload } = split(String((response.body as { access_token: string }).access_token));
    assert.deepEqual(payload.aud, ["https://a.example", "https://b.example", "urn:acme:ledger"]);

    const single = await tokenRequest("grant_type=client_credentials&audience=urn%3Aacme%3Aledger");
    assert.equal(split(String(single.body.access_token)).payload.aud, "urn:acme:ledger");
  });

  test("client authentication failures are invalid_client", async () => {
    const none = await postForm(harness, "/v1/oauth/token", "grant_type=client_credentials");
    assertOAuthError(none, 401, "invalid_client");
    assert.equal(none.headers.get("www-authenticate"), 'Basic realm="arbor", charset="UTF-8"');

    const wrong = await tokenRequest(
      "grant_type=client_credentials",
      basic(acme.id, globex.clientSecret),
    );
    assertOAuthError(wrong, 401, "invalid_client");
    assert.match(wrong.headers.get("www-authenticate") ?? "", /^Basic /);

    const malformed = await tokenRequest("grant_type=client_credentials", {
      authorization: "Basic !!!",
    });
    assertOAuthError(malformed, 401, "invalid_client");

    const post = new URLSearchParams({
      grant_type: "client_credentials",
      client_id: acme.id,
      client_secret: "arbor_cs_x",
    });
    assertOAuthError(await postForm(harness, "/v1/oauth/token", post), 401, "invalid_client");
  });

  test("secrets are not accepted as bearer tokens of the API", async () => {
    const response = await api(harness, "GET", "/v1/keys", undefined, acme.clientSecret);
    assert.equal(response.status, 401);
  });

  test("introspection needs client credentials or an operator token", async () => {
    const { access_token: token } = await obtainToken(harness, acme);
    const form = new URLSearchParams({ token });

    const anonymous = await postForm(harness, "/v1/oauth/introspect", form);
    assertOAuthError(anonymous, 401, "invalid_client");

    const badBearer = await postForm(harness, "/v1/oauth/introspect", form, {
      authorization: "Bearer arbor_op_nope",
    });
    assertOAuthError(badBearer, 401, "invalid_client");
    assert.equal(badBearer.headers.get("www-authenticate"), 'Bearer error="invalid_token"');
    assert.equal(harness.audit.ofType("auth.failed").at(-1)?.details.reason, "malformed");

    // An access token is not an operator token, even a valid one.
    const withToken = await postForm(harness, "/v1/oauth/introspect", form, {
      authorization: `Bearer ${token}`,
    });
    assertOAuthError(withToken, 401, "invalid_client");

    const byClient = await postForm(
      harness,
      "/v1/oauth/introspect",
      form,
      basic(acme.id, acme.clientSecret),
    );
    assert.equal(byClient.status, 200);
    assert.equal((byClient.body as { active: boolean }).active, true);
    const event = harness.audit.ofType("token.introspected").at(-1)!;
    assert.equal(event.credentialId, split(token).payload.jti);
    assert.deepEqual(event.principal, { type: "service", id: acme.id });
  });

  test("introspection hides other tenants' tokens", async () => {
    const { access_token: token } = await obtainToken(harness, acme);
    const byGlobex = await postForm(
      harness,
      "/v1/oauth/introspect",
      new URLSearchParams({ token }),
      basic(globex.id, globex.clientSecret),
    );
    assert.equal(byGlobex.status, 200);
    assert.deepEqual(byGlobex.body, { active: false });
    assert.equal(harness.audit.ofType("token.rejected").at(-1)?.details.reason, "out_of_scope");

    const scoped = await api<{ token: string }>(harness, "POST", "/v1/operator/tokens", {
      name: "globex operator",
      environment: "prod",
      tenant: "globex",
    });
    const byOperator = await postForm(
      harness,
      "/v1/oauth/introspect",
      new URLSearchParams({ token }),
      {
        authorization: `Bearer ${scoped.body.token}`,
      },
    );
    assert.deepEqual(byOperator.body, { active: false });
  });

  test("revocation rules follow RFC 7009", async () => {
    const { access_token: token } = await obtainToken(harness, acme);
    const form = new URLSearchParams({ token });

    const byOther = await postForm(
      harness,
      "/v1/oauth/revoke",
      form,
      basic(globex.id, globex.clientSecret),
    );
    assert.equal(byOther.status, 200, "another tenant's token is answered like an invalid one");
    assert.equal((await introspect(harness, token)).active, true, "and is not revoked");

    await createKeys(harness, ["prod/acme/search:sign"]);
    const sibling = await createService(harness, {
      name: "search",
      environment: "prod",
      tenant: "acme",
      service: "search",
      audiences: ["https://a.example"],
    });
    const bySibling = await postForm(
      harness,
      "/v1/oauth/revoke",
      form,
      basic(sibling.id, sibling.clientSecret),
    );
    assertOAuthError(bySibling, 400, "unauthorized_client", /only its own tokens/);
    assert.equal((await introspect(harness, token)).active, true);

    const readOnly = await api<{ token: string }>(harness, "POST", "/v1/operator/tokens", {
      name: "auditor",
      readOnly: true,
    });
    const byReader = await postForm(harness, "/v1/oauth/revoke", form, {
      authorization: `Bearer ${readOnly.body.token}`,
    });
    assertOAuthError(byReader, 403, "access_denied");

    const garbage = await postForm(
      harness,
      "/v1/oauth/revoke",
      new URLSearchParams({ token: "not.a.token" }),
      basic(acme.id, acme.clientSecret),
    );
    assert.equal(garbage.status, 200, "invalid tokens are not an error");

    const byOperator = await postForm(harness, "/v1/oauth/revoke", form, {
      authorization: `Bearer ${harness.rootToken}`,
    });
    assert.equal(byOperator.status, 200);
    assert.deepEqual(await introspect(harness, token), { active: false });
  });

  test("issuer documents and unknown issuers", async () => {
    const metadataUrls = [
      `${harness.base}/.well-known/oauth-authorization-server/v1/issuers/prod/acme`,
      `${harness.base}/v1/issuers/prod/acme/.well-known/openid-configuration`,
    ];
    for (const url of metadataUrls) {
      const response = await fetch(url);
      assert.equal(response.status, 200, url);
      const body = (await response.json()) as Record<string, unknown>;
      assert.equal(body.issuer, acme.issuer);
      assert.equal(body.introspection_endpoint, `${harness.base}/v1/oauth/introspect`);
      assert.equal(body.revocation_endpoint, `${harness.base}/v1/oauth/revoke`);
      assert.deepEqual(body.grant_types_supported, ["client_credentials"]);
      assert.deepEqual(body.token_endpoint_auth_methods_supported, [
        "client_secret_basic",
        "client_secret_post",
      ]);
    }

    const jwks = await fetch(`${acme.issuer}/jwks`);
    const keys = ((await jwks.json()) as { keys: Array<Record<string, unknown>> }).keys;
    assert.ok(keys.length >= 1);
    for (const key of keys) {
      assert.equal(key.use, "sig");
      assert.equal(key.alg, "EdDSA");
      assert.match(String(key.kid), /^key_[a-z2-7]{26}\.[0-9]+$/);
      assert.equal(key.d, undefined, "no private parameter is published");
    }

    const environment = await fetch(`${harness.base}/v1/issuers/prod/jwks`);
    assert.equal(environment.status, 200);
    assert.deepEqual(
      await environment.json(),
      { keys: [] },
      "no sign key sits directly under prod",
    );

    for (const path of [
      "/v1/issuers/nope/jwks",
      "/v1/issuers/prod/acme/billing:sign/jwks",
      "/v1/issuers/prod/nope/jwks",
      "/v1/issuers/prod/acme",
      "/v1/issuers/prod/acme/keys",
      "/v1/issuers/Prod/jwks",
      "/.well-known/oauth-authorization-server/v1/issuers/prod/nope",
    ]) {
      const response = await fetch(`${harness.base}${path}`);
      assert.equal(response.status, 404, path);
      assert.equal(
        ((await response.json()) as { error: { code: string } }).error.code,
        "NOT_FOUND",
        path,
      );
    }
  });

  test("token issuance is audited before the token leaves", async () => {
    const before = await harness.storage.db.selectFrom("issuances").select("id").execute();
    harness.audit.failing = true;
    try {
      const response = await tokenRequest("grant_type=client_credentials");
      assertOAuthError(response, 503, "temporarily_unavailable", /audit/);
      assert.equal(response.body.access_token, undefined);
    } finally {
      harness.audit.failing = false;
    }
    const after = await harness.storage.db.selectFrom("issuances").select("id").execute();
    assert.equal(after.length, before.length, "no issuance was recorded");

    const issued = await tokenRequest("grant_type=client_credentials");
    const jti = String(split(String(issued.body.access_token)).payload.jti);
    const event = harness.audit.ofType("token.issued").at(-1)!;
    assert.equal(event.outcome, "success");
    assert.equal(event.credentialId, jti);
    assert.equal(event.principal.type, "service");
    assert.equal(event.principal.id, acme.id);
    assert.equal(event.keyId, acme.signKeyId);
    assert.equal(event.keyVersion, 1);
    assert.equal(event.chain.at(-1), `${acme.signKeyId}@1`);
    assert.match(event.chain[0]!, /^root@\d+$/);
    assert.equal(event.chain.length, 4, "root, prod, prod/acme, the sign key");
    const issuance = await harness.storage.issuances.find(jti);
    assert.equal(issuance?.kind, "token");
    assert.equal(issuance?.expires_at, event.details.expiresAt);
    assert.equal(issuance?.principal, `service:${acme.id}`);

    const text = await harness.deps.metrics.registry.metrics();
    assert.match(text, /arbor_issuances_total\{kind="token"\} [1-9]/);
    assert.match(text, /arbor_issuance_duration_seconds_count\{kind="token"\} [1-9]/);
  });

  test("bad input leaves no state", async () => {
    const count = async (
      table: "issuances" | "revoked_tokens" | "service_principals" | "client_secrets",
    ) =>
      (await harness.storage.db
        .selectFrom(table)
        .select((eb) => eb.fn.countAll().as("n"))
        .executeTakeFirst())!.n;
    const tables = ["issuances", "revoked_tokens", "service_principals", "client_secrets"] as const;
    const before = await Promise.all(tables.map(count));

    await tokenRequest("grant_type=client_credentials&scope=admin");
    await tokenRequest("grant_type=password");
    await postForm(
      harness,
      "/v1/oauth/revoke",
      new URLSearchParams({ token: "a.b.c" }),
      basic(acme.id, acme.clientSecret),
    );
    const base = { name: "x", environment: "prod", tenant: "acme", service: "billing" };
    const invalid: Array<[Record<string, unknown>, number, string]> = [
      [{ ...base, audiences: [] }, 400, "INVALID_ARGUMENT"],
      [{ ...base, service: "nosuch", audiences: ["https://a.example"] }, 404, "KEY_NOT_FOUND"],
      [{ ...base, audiences: ["has space"] }, 400, "INVALID_ARGUMENT"],
      [{ ...base, audiences: ["a", "a"] }, 400, "INVALID_ARGUMENT"],
      [{ ...base, audiences: ["a"], scopes: ['q"uote'] }, 400, "INVALID_ARGUMENT"],
      [{ ...base, name: "\u0000", audiences: ["a"] }, 400, "INVALID_ARGUMENT"],
    ];
    for (const [body, status, code] of invalid) {
      const response = await api<{ error: { code: string } }>(
        harness,
        "POST",
        "/v1/services",
        body,
      );
      assert.equal(response.status, status, JSON.stringify(response.body));
      assert.equal(response.body.error.code, code);
    }
    const rotate = await api(harness, "POST", `/v1/services/${acme.id}/secrets`, {
      overlap: "31d",
    });
    assert.equal(rotate.status, 400);
    const unknown = await api(
      harness,
      "POST",
      "/v1/services/svc_aaaaaaaaaaaaaaaaaaaaaaaaaa/secrets",
      {},
    );
    assert.equal(unknown.status, 404);

    assert.deepEqual(await Promise.all(tables.map(count)), before);
  });

  test("sealed server returns temporarily_unavailable", async () => {
    const other = await openTokenServer();
    try {
      await createKeys(other, ["prod", "prod/acme", "prod/acme/billing:sign"]);
      const service = await createService(other, {
        name: "acme",
        environment: "prod",
        tenant: "acme",
        service: "billing",
        audiences: ["https://a.example"],
      });
      assert.equal((await api(other, "POST", "/v1/sys/seal", {})).status, 200);

      const response = await postForm<OAuthError>(
        other,
        "/v1/oauth/token",
        "grant_type=client_credentials",
        basic(service.id, service.clientSecret),
      );
      assertOAuthError(response, 503, "temporarily_unavailable", /sealed/);
      const jwks = await fetch(`${service.issuer}/jwks`);
      assert.equal(jwks.status, 200, "public keys are served while sealed");
      assert.equal(((await jwks.json()) as { keys: unknown[] }).keys.length, 1);
    } finally {
      await other.close();
    }
  });
});
