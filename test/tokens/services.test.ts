import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { constraintViolation } from "../../src/storage/index.ts";
import { runCli } from "../cli/helpers.ts";
import {
  api,
  basic,
  createKeys,
  createService,
  openTokenServer,
  postForm,
  type CreatedService,
  type TokenHarness,
} from "./harness.ts";

const MINUTE = 60_000;

interface Principal {
  id: string;
  name: string;
  tenant: string;
  signKeyPath: string;
  issuer: string;
  maxTokenTtl: string;
  secrets: Array<{ id: string; expiresAt: string | null; revokedAt: string | null }>;
}

describe("service principals", () => {
  let harness: TokenHarness;
  let acme: CreatedService;

  before(async () => {
    harness = await openTokenServer();
    await createKeys(harness, ["prod", "prod/acme", "prod/acme/billing:sign", "prod/globex"]);
    await createKeys(harness, [
      "prod/globex/billing:sign",
      "prod/gateway:sign",
      "stage",
      "stage/ledger:sign",
    ]);
    acme = await createService(harness, {
      name: "acme billing",
      environment: "prod",
      tenant: "acme",
      service: "billing",
      audiences: ["https://a.example"],
    });
  });

  after(async () => {
    await harness.close();
  });

  function tokenStatus(clientId: string, secret: string): Promise<number> {
    return postForm(
      harness,
      "/v1/oauth/token",
      "grant_type=client_credentials",
      basic(clientId, secret),
    ).then((response) => response.status);
  }

  async function scopedOperator(fields: Record<string, unknown>): Promise<string> {
    const created = await api<{ token: string }>(harness, "POST", "/v1/operator/tokens", {
      name: "scoped",
      ...fields,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return created.body.token;
  }

  test("create returns the secret once", async () => {
    assert.match(acme.id, /^svc_[a-z2-7]{26}$/);
    assert.match(acme.clientSecret, /^arbor_cs_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}$/);
    assert.equal(acme.issuer, `${harness.base}/v1/issuers/prod/acme`);

    const shown = await api<Principal & { clientSecret?: string }>(
      harness,
      "GET",
      `/v1/services/${acme.id}`,
    );
    assert.equal(shown.status, 200);
    assert.equal(shown.body.clientSecret, undefined);
    assert.equal(shown.body.signKeyPath, "prod/acme/billing:sign");
    assert.equal(shown.body.maxTokenTtl, "15m");
    assert.equal(shown.body.secrets.length, 1);
    assert.ok(!JSON.stringify(shown.body).includes(acme.clientSecret));

    const stored = await harness.storage.servicePrincipals.listSecrets(acme.id);
    assert.equal(stored[0]!.secret_hash.length, 32, "only the SHA-256 hash is stored");

    const event = harness.audit.ofType("service.created").at(-1)!;
    assert.equal(event.credentialId, acme.clientSecretId);
    assert.ok(!JSON.stringify(event).includes(acme.clientSecret));
  });

  test("environment-level service uses the environment issuer", async () => {
    const gateway = await createService(harness, {
      name: "gateway",
      environment: "prod",
      service: "gateway",
      audiences: ["https://a.example"],
    });
    assert.equal(gateway.issuer, `${harness.base}/v1/issuers/prod`);
    const shown = await api<Principal>(harness, "GET", `/v1/services/${gateway.id}`);
    assert.equal(shown.body.tenant, "-");
  });

  test("missing sign key is not found", async () => {
    const response = await api<{ error: { code: string } }>(harness, "POST", "/v1/services", {
      name: "x",
      environment: "prod",
      tenant: "acme",
      service: "search",
      audiences: ["https://a.example"],
    });
    assert.equal(response.status, 404);
    assert.equal(response.body.error.code, "KEY_NOT_FOUND");
  });

  test("operators see only principals in scope", async () => {
    const globexOperator = await scopedOperator({ environment: "prod", tenant: "globex" });

    const outside = await api<{ error: { code: string } }>(
      harness,
      "POST",
      "/v1/services",
      { name: "x", environment: "prod", tenant: "acme", service: "billing", audiences: ["a"] },
      globexOperator,
    );
    assert.equal(outside.status, 403);
    assert.equal(outside.body.error.code, "FORBIDDEN");

    const inside = await api<Principal>(
      harness,
      "POST",
      "/v1/services",
      { name: "g", environment: "prod", tenant: "globex", service: "billing", audiences: ["a"] },
      globexOperator,
    );
    assert.equal(inside.status, 201, JSON.stringify(inside.body));

    const listed = await api<{ services: Principal[] }>(
      harness,
      "GET",
      "/v1/services",
      undefined,
      globexOperator,
    );
    assert.deepEqual(
      listed.body.services.map((service) => service.id),
      [inside.body.id],
    );

    for (const [method, url] of [
      ["GET", `/v1/services/${acme.id}`],
      ["POST", `/v1/services/${acme.id}/secrets`],
      ["DELETE", `/v1/services/${acme.id}/secrets/${acme.clientSecretId}`],
    ] as const) {
      const response = await api<{ error: { code: string } }>(
        harness,
        method,
        url,
        method === "POST" ? {} : undefined,
        globexOperator,
      );
      assert.equal(response.status, 404, `${method} ${url}`);
      assert.equal(response.body.error.code, "NOT_FOUND");
    }

    const everything = await api<{ services: Principal[] }>(harness, "GET", "/v1/services");
    assert.ok(everything.body.services.length >= 2);
  });

  test("read-only operators cannot change principals", async () => {
    const reader = await scopedOperator({ readOnly: true });
    const created = await api(
      harness,
      "POST",
      "/v1/services",
      { name: "r", environment: "prod", tenant: "acme", service: "billing", audiences: ["a"] },
      reader,
    );
    assert.equal(created.status, 403);
    const listed = await api(harness, "GET", "/v1/services", undefined, reader);
    assert.equal(listed.status, 200);
  });

  test("secret rotation overlap", async () => {
    const service = await createService(harness, {
      name: "rotating",
      environment: "prod",
      tenant: "acme",
      service: "billing",
      audiences: ["https://a.example"],
    });
    const rotated = await api<{
      id: string;
      clientSecret: string;
      previousSecretsExpireAt: string;
    }>(harness, "POST", `/v1/services/${service.id}/secrets`, { overlap: "10m" });
    assert.equal(rotated.status, 201, JSON.stringify(rotated.body));
    assert.equal(
      Date.parse(rotated.body.previousSecretsExpireAt),
      harness.clock.now() + 10 * MINUTE,
    );

    assert.equal(
      await tokenStatus(service.id, service.clientSecret),
      200,
      "old works during overlap",
    );
    assert.equal(await tokenStatus(service.id, rotated.body.clientSecret), 200, "new works");

    harness.clock.advance(10 * MINUTE);
    assert.equal(await tokenStatus(service.id, service.clientSecret), 401, "old stops at the end");
    assert.equal(await tokenStatus(service.id, rotated.body.clientSecret), 200);

    // A rotation without overlap ends every earlier secret at once.
    const immediate = await api<{ clientSecret: string }>(
      harness,
      "POST",
      `/v1/services/${service.id}/secrets`,
      {},
    );
    assert.equal(await tokenStatus(service.id, rotated.body.clientSecret), 401);
    assert.equal(await tokenStatus(service.id, immediate.body.clientSecret), 200);

    // A longer overlap never extends a secret that already ends sooner.
    const shown = await api<Principal>(harness, "GET", `/v1/services/${service.id}`);
    const first = shown.body.secrets.find((secret) => secret.id === service.clientSecretId)!;
    await api(harness, "POST", `/v1/services/${service.id}/secrets`, { overlap: "1d" });
    const again = await api<Principal>(harness, "GET", `/v1/services/${service.id}`);
    assert.equal(
      again.body.secrets.find((secret) => secret.id === first.id)?.expiresAt,
      first.expiresAt,
    );
  });

  test("revoked secret stops at once", async () => {
    const service = await createService(harness, {
      name: "revoking",
      environment: "prod",
      tenant: "acme",
      service: "billing",
      audiences: ["https://a.example"],
    });
    const rotated = await api<{ id: string; clientSecret: string }>(
      harness,
      "POST",
      `/v1/services/${service.id}/secrets`,
      { overlap: "1h" },
    );
    const revoked = await api<{ id: string; revokedAt: string }>(
      harness,
      "DELETE",
      `/v1/services/${service.id}/secrets/${service.clientSecretId}`,
    );
    assert.equal(revoked.status, 200);
    assert.equal(Date.parse(revoked.body.revokedAt), harness.clock.now());
    assert.equal(await tokenStatus(service.id, service.clientSecret), 401);
    assert.equal(await tokenStatus(service.id, rotated.body.clientSecret), 200);

    const again = await api(
      harness,
      "DELETE",
      `/v1/services/${service.id}/secrets/${service.clientSecretId}`,
    );
    assert.equal(again.status, 200, "revoking twice returns the revoked secret");
    const foreign = await api<{ error: { code: string } }>(
      harness,
      "DELETE",
      `/v1/services/${service.id}/secrets/${acme.clientSecretId}`,
    );
    assert.equal(foreign.status, 404, "a secret of another principal is not found");
    assert.equal(foreign.body.error.code, "NOT_FOUND");
  });

  test("service principal scope is fixed by its sign key", async () => {
    // Storage refuses a principal whose environment or tenant differs from its sign key's, even
    // when the application's checks are skipped.
    const row = {
      id: "svc_bbbbbbbbbbbbbbbbbbbbbbbbbb",
      name: "forged",
      environment: "prod",
      tenant: "globex",
      service: "billing",
      sign_key_id: acme.signKeyId,
      sign_key_kind: "service" as const,
      scopes: "[]",
      audiences: "[]",
      max_token_ttl_ms: 60_000,
      created_at: harness.clock.now(),
    };
    for (const change of [{}, { environment: "stage" }, { tenant: "-" }]) {
      const attempt = { ...row, ...change };
      await assert.rejects(harness.storage.servicePrincipals.insert(attempt), (error) => {
        assert.equal(constraintViolation(error), "foreign_key", JSON.stringify(change));
        return true;
      });
    }
    await harness.storage.servicePrincipals.insert({ ...row, tenant: "acme" });
  });

  test("arbor service commands", async () => {
    const env = { ARBOR_ADDR: harness.base, ARBOR_TOKEN: harness.rootToken };
    const created = await runCli(
      [
        "service",
        "create",
        "prod/globex/billing",
        "--name",
        "cli",
        "--audience",
        "https://a.example",
        "--scope",
        "read",
        "--max-token-ttl",
        "5m",
        "--json",
      ],
      { env },
    );
    assert.equal(created.code, 0, created.stderr);
    const principal = created.json<{
      id: string;
      clientSecret: string;
      maxTokenTtl: string;
      scopes: string[];
    }>();
    assert.equal(principal.maxTokenTtl, "5m");
    assert.deepEqual(principal.scopes, ["read"]);
    assert.equal(await tokenStatus(principal.id, principal.clientSecret), 200);

    const human = await runCli(
      ["service", "create", "stage/ledger", "--name", "ledger", "--audience", "a"],
      { env },
    );
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.text, /client_secret {2}arbor_cs_/);
    assert.match(human.text, /shown only once/);

    const listed = await runCli(["service", "list"], { env });
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.text, new RegExp(principal.id));

    const shown = await runCli(["service", "show", principal.id], { env });
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.text, /prod\/globex\/billing:sign/);
    assert.doesNotMatch(shown.text, /arbor_cs_/);

    const rotated = await runCli(
      ["service", "secret", "rotate", principal.id, "--overlap", "1m", "--json"],
      { env },
    );
    assert.equal(rotated.code, 0, rotated.stderr);
    const secret = rotated.json<{ id: string; clientSecret: string }>();
    assert.equal(await tokenStatus(principal.id, secret.clientSecret), 200);

    const revoked = await runCli(["service", "secret", "revoke", principal.id, secret.id], { env });
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal(await tokenStatus(principal.id, secret.clientSecret), 401);

    const bad = await runCli(
      ["service", "create", "prod/globex/billing:sign", "--name", "x", "--audience", "a"],
      { env },
    );
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /expected env\/service or env\/tenant\/service/);

    const missing = await runCli(["service", "show", "svc_aaaaaaaaaaaaaaaaaaaaaaaaaa"], { env });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /NOT_FOUND/);
  });
});
