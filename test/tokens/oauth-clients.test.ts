import assert from "node:assert/strict";
import { createPublicKey, type JsonWebKey } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { createVerifier } from "fast-jwt";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import jsonwebtoken from "jsonwebtoken";
import * as oidc from "openid-client";

import {
  createKeys,
  createService,
  obtainToken,
  openTokenServer,
  type CreatedService,
  type TokenHarness,
} from "./harness.ts";

const ACME_PATHS = ["prod", "prod/acme", "prod/acme/billing:sign", "prod/acme/billing:encrypt"];

describe("standard OAuth clients", () => {
  let harness: TokenHarness;
  let acme: CreatedService;
  let globex: CreatedService;
  let initech: CreatedService;

  before(async () => {
    harness = await openTokenServer();
    await createKeys(harness, ACME_PATHS);
    await createKeys(harness, ["prod/globex", "prod/globex/billing:sign"]);
    await createKeys(harness, ["prod/initech", "prod/initech/billing:sign"], "ES256");
    const audiences = ["https://billing.example", `${harness.base}/v1`];
    acme = await createService(harness, {
      name: "acme billing",
      environment: "prod",
      tenant: "acme",
      service: "billing",
      audiences,
      scopes: ["invoices:read", "invoices:write"],
    });
    globex = await createService(harness, {
      name: "globex billing",
      environment: "prod",
      tenant: "globex",
      service: "billing",
      audiences,
    });
    initech = await createService(harness, {
      name: "initech billing",
      environment: "prod",
      tenant: "initech",
      service: "billing",
      audiences,
    });
  });

  after(async () => {
    await harness.close();
  });

  /** Discovers an issuer with openid-client over plain HTTP on the loopback interface. */
  async function discover(
    service: CreatedService,
    algorithm: "oidc" | "oauth2",
    auth: "basic" | "post",
  ) {
    const clientAuth =
      auth === "basic"
        ? oidc.ClientSecretBasic(service.clientSecret)
        : oidc.ClientSecretPost(service.clientSecret);
    return oidc.discovery(new URL(service.issuer), service.id, service.clientSecret, clientAuth, {
      algorithm,
      execute: [oidc.allowInsecureRequests],
    });
  }

  function verifyOptions(issuer: string) {
    return {
      issuer,
      audience: "https://billing.example",
      typ: "at+jwt",
      algorithms: ["EdDSA", "ES256"],
      currentDate: new Date(harness.clock.now()),
    };
  }

  test("openid-client discovers and obtains a token", async () => {
    const config = await discover(acme, "oidc", "basic");
    const metadata = config.serverMetadata();
    assert.equal(metadata.issuer, `${harness.base}/v1/issuers/prod/acme`);
    assert.equal(metadata.token_endpoint, `${harness.base}/v1/oauth/token`);
    assert.equal(metadata.jwks_uri, `${harness.base}/v1/issuers/prod/acme/jwks`);

    const response = await oidc.clientCredentialsGrant(config, {
      scope: "invoices:read",
      resource: "https://billing.example",
    });
    assert.equal(response.token_type, "bearer");
    assert.equal(response.expires_in, 900);
    assert.equal(response.scope, "invoices:read");

    const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri));
    const verified = await jwtVerify(response.access_token, jwks, verifyOptions(metadata.issuer));
    assert.equal(verified.payload.sub, acme.id);
    assert.equal(verified.payload.client_id, acme.id);
    assert.equal(verified.payload.aud, "https://billing.example");
    assert.equal(verified.payload.scope, "invoices:read");
    assert.equal(verified.payload.env, "prod");
    assert.equal(verified.payload.tenant, "acme");
    assert.match(String(verified.payload.jti), /^tok_[a-z2-7]{26}$/);
    assert.equal(verified.protectedHeader.alg, "EdDSA");
    assert.equal(verified.protectedHeader.typ, "at+jwt");
    assert.equal(verified.protectedHeader.kid, `${acme.signKeyId}.1`);
  });

  test("RFC 8414 discovery with client_secret_post", async () => {
    const config = await discover(acme, "oauth2", "post");
    assert.equal(config.serverMetadata().issuer, acme.issuer);
    const response = await oidc.clientCredentialsGrant(config, {
      resource: "https://billing.example",
    });
    // Without a scope parameter the token carries every scope the client may have.
    assert.equal(response.scope, "invoices:read invoices:write");
  });

  test("fast-jwt and jsonwebtoken verify ES256", async () => {
    const config = await discover(initech, "oidc", "basic");
    const { access_token: token } = await oidc.clientCredentialsGrant(config, {
      resource: "https://billing.example",
    });
    assert.equal(decodeProtectedHeader(token).alg, "ES256");
    const signature = Buffer.from(token.split(".")[2]!, "base64url");
    assert.equal(signature.length, 64, "ES256 signatures are raw r || s");

    const jwksResponse = await fetch(config.serverMetadata().jwks_uri!);
    const { keys } = (await jwksResponse.json()) as { keys: Array<JsonWebKey & { kid: string }> };
    const jwk = keys.find((key) => key.kid === decodeProtectedHeader(token).kid);
    assert.ok(jwk, "the token's kid is in the issuer's JWKS");
    const pem = createPublicKey({ key: jwk, format: "jwk" }).export({
      type: "spki",
      format: "pem",
    }) as string;

    const fast = createVerifier({
      key: pem,
      algorithms: ["ES256"],
      allowedIss: initech.issuer,
      allowedAud: "https://billing.example",
      clockTimestamp: harness.clock.now(),
    });
    const payload = fast(token) as Record<string, unknown>;
    assert.equal(payload.client_id, initech.id);

    const verified = jsonwebtoken.verify(token, pem, {
      algorithms: ["ES256"],
      issuer: initech.issuer,
      audience: "https://billing.example",
      clockTimestamp: Math.floor(harness.clock.now() / 1000),
    }) as Record<string, unknown>;
    assert.equal(verified.sub, initech.id);
    assert.equal(verified.tenant, "initech");
  });

  test("issuer never accepts another tenant's token", async () => {
    const { access_token: token } = await obtainToken(harness, acme, {
      resource: "https://billing.example",
    });
    const globexJwks = createRemoteJWKSet(new URL(`${globex.issuer}/jwks`));

    await assert.rejects(jwtVerify(token, globexJwks, verifyOptions(globex.issuer)), (error) => {
      assert.equal((error as { code?: string }).code, "ERR_JWKS_NO_MATCHING_KEY");
      return true;
    });

    // Even a verifier that also held acme's keys rejects acme's token for globex's issuer.
    const acmeJwks = createRemoteJWKSet(new URL(`${acme.issuer}/jwks`));
    await assert.rejects(jwtVerify(token, acmeJwks, verifyOptions(globex.issuer)), (error) => {
      assert.equal((error as { code?: string }).code, "ERR_JWT_CLAIM_VALIDATION_FAILED");
      assert.equal((error as { claim?: string }).claim, "iss");
      return true;
    });
  });

  test("openid-client sees OAuth errors", async () => {
    const config = await discover(acme, "oidc", "basic");
    await assert.rejects(
      oidc.clientCredentialsGrant(config, { scope: "admin" }),
      (error: unknown) => {
        assert.ok(error instanceof oidc.ResponseBodyError, String(error));
        assert.equal(error.error, "invalid_scope");
        assert.equal(error.status, 400);
        assert.match(error.error_description ?? "", /scope "admin" is not allowed/);
        return true;
      },
    );

    const wrong = await oidc.discovery(
      new URL(acme.issuer),
      acme.id,
      "arbor_cs_wrong",
      oidc.ClientSecretBasic("arbor_cs_wrong"),
      { execute: [oidc.allowInsecureRequests] },
    );
    const failure = await oidc.clientCredentialsGrant(wrong).then(
      () => assert.fail("a wrong secret must not obtain a token"),
      (error: unknown) => error,
    );
    // A 401 with WWW-Authenticate surfaces as the challenge error; the body is RFC 6749's.
    assert.ok(failure instanceof oidc.WWWAuthenticateChallengeError, String(failure));
    assert.equal(failure.status, 401);
    assert.equal(failure.cause[0]?.scheme, "basic");
    assert.equal(failure.cause[0]?.parameters.realm, "arbor");
    const body = (await failure.response.json()) as { error: string };
    assert.equal(body.error, "invalid_client");
  });

  test("openid-client introspects and revokes", async () => {
    const config = await discover(acme, "oidc", "basic");
    const { access_token: token } = await oidc.clientCredentialsGrant(config, {
      resource: "https://billing.example",
    });

    const active = await oidc.tokenIntrospection(config, token);
    assert.equal(active.active, true);
    assert.equal(active.client_id, acme.id);
    assert.equal(active.aud, "https://billing.example");

    await oidc.tokenRevocation(config, token);
    const revoked = await oidc.tokenIntrospection(config, token);
    assert.equal(revoked.active, false);
  });
});
