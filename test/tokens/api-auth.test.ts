import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  api,
  basic,
  createKeys,
  createService,
  obtainToken,
  openTokenServer,
  postForm,
  type CreatedService,
  type TokenHarness,
} from "./harness.ts";

const BILLING_ENCRYPT = encodeURIComponent("prod/acme/billing:encrypt");
const SEARCH_ENCRYPT = encodeURIComponent("prod/acme/search:encrypt");
const PLAINTEXT = Buffer.from("invoice 42").toString("base64");

describe("access tokens on Arbor's API", () => {
  let harness: TokenHarness;
  let billing: CreatedService;
  let apiToken: string;

  before(async () => {
    harness = await openTokenServer();
    await createKeys(harness, [
      "prod",
      "prod/acme",
      "prod/acme/billing:sign",
      "prod/acme/billing:encrypt",
    ]);
    await createKeys(harness, [
      "prod/acme/search:sign",
      "prod/acme/search:encrypt",
      "prod/ledger:encrypt",
    ]);
    billing = await createService(harness, {
      name: "billing",
      environment: "prod",
      tenant: "acme",
      service: "billing",
      audiences: [`${harness.base}/v1`, "https://billing.example"],
    });
    apiToken = (await obtainToken(harness, billing, { resource: `${harness.base}/v1` }))
      .access_token;
  });

  after(async () => {
    await harness.close();
  });

  test("access token uses its service's keys", async () => {
    const sealed = await api<{ ciphertext: string }>(
      harness,
      "POST",
      `/v1/keys/${BILLING_ENCRYPT}/encrypt`,
      { plaintext: PLAINTEXT },
      apiToken,
    );
    assert.equal(sealed.status, 200, JSON.stringify(sealed.body));
    const opened = await api<{ plaintext: string }>(
      harness,
      "POST",
      "/v1/decrypt",
      { ciphertext: sealed.body.ciphertext },
      apiToken,
    );
    assert.equal(opened.status, 200);
    assert.equal(opened.body.plaintext, PLAINTEXT);

    const dataKey = await api(
      harness,
      "POST",
      `/v1/keys/${BILLING_ENCRYPT}/data-key`,
      {},
      apiToken,
    );
    assert.equal(dataKey.status, 200);
    const event = harness.audit.ofType("data_key.issued").at(-1)!;
    assert.deepEqual(event.principal, { type: "service", id: billing.id });
  });

  test("access tokens reach only their own service's keys", async () => {
    const sibling = await api<{ error: { code: string; message: string } }>(
      harness,
      "POST",
      `/v1/keys/${SEARCH_ENCRYPT}/encrypt`,
      { plaintext: PLAINTEXT },
      apiToken,
    );
    assert.equal(sibling.status, 404);
    assert.equal(sibling.body.error.code, "KEY_NOT_FOUND");

    // The same response as for a key that does not exist at all.
    const missing = await api<{ error: { code: string; message: string } }>(
      harness,
      "POST",
      `/v1/keys/${encodeURIComponent("prod/acme/nosuch:encrypt")}/encrypt`,
      { plaintext: PLAINTEXT },
      apiToken,
    );
    assert.equal(missing.body.error.code, "KEY_NOT_FOUND");
    assert.equal(
      sibling.body.error.message.replace("search", "nosuch"),
      missing.body.error.message,
    );

    const environmentLevel = await api(
      harness,
      "POST",
      `/v1/keys/${encodeURIComponent("prod/ledger:encrypt")}/data-key`,
      {},
      apiToken,
    );
    assert.equal(environmentLevel.status, 404);

    // A ciphertext of the sibling service cannot be opened with billing's token either.
    const foreign = await api<{ ciphertext: string }>(
      harness,
      "POST",
      `/v1/keys/${SEARCH_ENCRYPT}/encrypt`,
      {
        plaintext: PLAINTEXT,
      },
    );
    assert.equal(foreign.status, 200);
    const refused = await api<{ error: { code: string; message: string } }>(
      harness,
      "POST",
      "/v1/decrypt",
      { ciphertext: foreign.body.ciphertext },
      apiToken,
    );
    // Exactly what an operator outside the key's scope gets for the same ciphertext.
    const outsider = await api<{ token: string }>(harness, "POST", "/v1/operator/tokens", {
      name: "outsider",
      environment: "prod",
      tenant: "globex",
    });
    const outside = await api<{ error: { code: string; message: string } }>(
      harness,
      "POST",
      "/v1/decrypt",
      { ciphertext: foreign.body.ciphertext },
      outsider.body.token,
    );
    assert.ok(refused.status >= 400, String(refused.status));
    assert.ok(refused.status < 500, String(refused.status));
    assert.equal(refused.status, outside.status);
    assert.equal(refused.body.error.code, outside.body.error.code);
    assert.equal(refused.body.error.message, outside.body.error.message);
  });

  test("access tokens cannot manage Arbor", async () => {
    const routes: Array<[string, string, unknown]> = [
      ["GET", "/v1/keys", undefined],
      ["POST", "/v1/keys", { path: "prod/acme/new:encrypt" }],
      ["POST", `/v1/keys/${BILLING_ENCRYPT}/rotate`, {}],
      ["GET", "/v1/operator/tokens", undefined],
      ["GET", "/v1/services", undefined],
      ["POST", `/v1/services/${billing.id}/secrets`, {}],
      ["GET", "/v1/sys/metrics", undefined],
    ];
    for (const [method, url, body] of routes) {
      const response = await api<{ error: { code: string } }>(harness, method, url, body, apiToken);
      assert.equal(response.status, 403, `${method} ${url}`);
      assert.equal(response.body.error.code, "FORBIDDEN");
    }
    const denied = harness.audit.ofType("authz.denied").at(-1)!;
    assert.deepEqual(denied.principal, { type: "service", id: billing.id });
  });

  test("token for another audience is refused", async () => {
    const other = (await obtainToken(harness, billing, { resource: "https://billing.example" }))
      .access_token;
    const response = await api<{ error: { code: string } }>(
      harness,
      "POST",
      `/v1/keys/${BILLING_ENCRYPT}/encrypt`,
      { plaintext: PLAINTEXT },
      other,
    );
    assert.equal(response.status, 401);
    assert.equal(response.body.error.code, "UNAUTHENTICATED");
    assert.equal(
      harness.audit.ofType("token.rejected").at(-1)?.details.reason,
      "audience_mismatch",
    );
  });

  test("revoked access token is refused", async () => {
    const token = (await obtainToken(harness, billing, { resource: `${harness.base}/v1` }))
      .access_token;
    await postForm(
      harness,
      "/v1/oauth/revoke",
      new URLSearchParams({ token }),
      basic(billing.id, billing.clientSecret),
    );
    const response = await api(harness, "POST", `/v1/keys/${BILLING_ENCRYPT}/data-key`, {}, token);
    assert.equal(response.status, 401);
    assert.equal(harness.audit.ofType("token.rejected").at(-1)?.details.reason, "revoked");
  });
});
