import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { createRemoteJWKSet, jwtVerify } from "jose";

import { importPrivateKey, sign, type SigningAlgorithm } from "../../src/crypto/index.ts";
import { forge, split } from "./forge.ts";
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

const MINUTE = 60_000;
const SIGN_KEY = encodeURIComponent("prod/acme/billing:sign");

describe("token lifecycle", () => {
  let harness: TokenHarness;
  let billing: CreatedService;
  let search: CreatedService;

  before(async () => {
    harness = await openTokenServer();
    await createKeys(harness, [
      "prod",
      "prod/acme",
      "prod/acme/billing:sign",
      "prod/acme/search:sign",
    ]);
    const fields = { environment: "prod", tenant: "acme", audiences: ["https://api.example"] };
    billing = await createService(harness, { ...fields, name: "billing", service: "billing" });
    search = await createService(harness, { ...fields, name: "search", service: "search" });
  });

  after(async () => {
    await harness.close();
  });

  /** Returns the kids in an issuer's JWKS, only those of `keyId` when given. */
  async function jwksKids(issuer: string, keyId?: string): Promise<string[]> {
    const response = await fetch(`${issuer}/jwks`);
    const body = (await response.json()) as { keys: Array<{ kid: string }> };
    const kids = body.keys.map((key) => key.kid).sort();
    return keyId === undefined ? kids : kids.filter((kid) => kid.startsWith(`${keyId}.`));
  }

  async function joseVerifies(token: string, issuer: string): Promise<boolean> {
    const jwks = createRemoteJWKSet(new URL(`${issuer}/jwks`), { cooldownDuration: 0 });
    try {
      await jwtVerify(token, jwks, {
        issuer,
        audience: "https://api.example",
        typ: "at+jwt",
        currentDate: new Date(harness.clock.now()),
      });
      return true;
    } catch {
      return false;
    }
  }

  test("tokens verify across a signing-key rotation", async () => {
    const v1 = `${billing.signKeyId}.1`;
    const v2 = `${billing.signKeyId}.2`;
    const before = (await obtainToken(harness, billing)).access_token;
    assert.equal(split(before).header.kid, v1);

    const rotated = await api<{ version: number; state: string; activateAt: string }>(
      harness,
      "POST",
      `/v1/keys/${SIGN_KEY}/rotate`,
      { publishDelay: "5m" },
    );
    assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
    assert.equal(rotated.body.state, "pending");

    // Published before its first token, while v1 still signs.
    assert.ok((await jwksKids(billing.issuer)).includes(v2), "the pending version is in the JWKS");
    const duringDelay = (await obtainToken(harness, billing)).access_token;
    assert.equal(split(duringDelay).header.kid, v1);

    // The last v1 token, one second before the publish delay ends.
    harness.clock.advance(5 * MINUTE - 1000);
    const lastOfV1 = (await obtainToken(harness, billing)).access_token;
    assert.equal(split(lastOfV1).header.kid, v1);
    harness.clock.advance(1000);
    assert.equal(await harness.deps.keyTree.promoteDuePending(), 1);
    const after = (await obtainToken(harness, billing)).access_token;
    assert.equal(split(after).header.kid, v2);
    const promotedAt = harness.clock.now();

    for (const token of [before, duringDelay, lastOfV1, after]) {
      assert.equal((await introspect(harness, token)).active, true);
      assert.ok(await joseVerifies(token, billing.issuer), "jose verifies with the remote JWKS");
    }
    assert.deepEqual(await jwksKids(billing.issuer, billing.signKeyId), [v1, v2].sort());

    // v1 stays published until retire_at: the maximum token lifetime (15m) plus 5m.
    harness.clock.advance(14 * MINUTE);
    assert.equal((await introspect(harness, lastOfV1)).active, true);
    assert.ok(await joseVerifies(lastOfV1, billing.issuer));
    harness.clock.advance(promotedAt + 20 * MINUTE - 1 - harness.clock.now());
    assert.ok(
      (await jwksKids(billing.issuer)).includes(v1),
      "still published just before retire_at",
    );

    harness.clock.advance(1);
    assert.deepEqual(
      await jwksKids(billing.issuer, billing.signKeyId),
      [v2],
      "gone at retire_at, before maintenance",
    );
    assert.equal(await harness.deps.keyTree.retireDueSigningVersions(), 1);
    const shown = await api<{ versions: Array<{ version: number; state: string }> }>(
      harness,
      "GET",
      `/v1/keys/${SIGN_KEY}`,
    );
    assert.equal(shown.body.versions.find((version) => version.version === 1)?.state, "disabled");
    assert.deepEqual(await jwksKids(billing.issuer, billing.signKeyId), [v2]);
  });

  test("revoked token introspects inactive", async () => {
    const { access_token: token } = await obtainToken(harness, billing);
    const revoked = await postForm(
      harness,
      "/v1/oauth/revoke",
      new URLSearchParams({ token }),
      basic(billing.id, billing.clientSecret),
    );
    assert.equal(revoked.status, 200);
    assert.deepEqual(revoked.body, {});
    assert.deepEqual(await introspect(harness, token), { active: false });
    assert.equal(harness.audit.ofType("token.rejected").at(-1)?.details.reason, "revoked");

    const event = harness.audit.ofType("token.revoked").at(-1)!;
    assert.equal(event.credentialId, split(token).payload.jti);
    assert.equal(event.details.alreadyRevoked, false);
    const issuance = await harness.storage.issuances.find(String(split(token).payload.jti));
    assert.notEqual(issuance?.revoked_at, null, "the issuance record is marked revoked");

    // Revoking again is accepted and changes nothing.
    const again = await postForm(
      harness,
      "/v1/oauth/revoke",
      new URLSearchParams({ token }),
      basic(billing.id, billing.clientSecret),
    );
    assert.equal(again.status, 200);
  });

  test("revoked token ids are pruned after expiry", async () => {
    const { access_token: token } = await obtainToken(harness, search);
    const jti = String(split(token).payload.jti);
    await postForm(
      harness,
      "/v1/oauth/revoke",
      new URLSearchParams({ token }),
      basic(search.id, search.clientSecret),
    );
    assert.equal(await harness.storage.servicePrincipals.isTokenRevoked(jti), true);

    assert.equal(await harness.tokens.pruneRevokedTokens(), 0, "kept while the token could verify");
    harness.clock.advance(15 * MINUTE);
    assert.ok((await harness.tokens.pruneRevokedTokens()) >= 1);
    assert.equal(await harness.storage.servicePrincipals.isTokenRevoked(jti), false);
    assert.deepEqual(await introspect(harness, token), { active: false }, "expired anyway");
  });

  test("token of a revoked version introspects inactive", async () => {
    const { access_token: token } = await obtainToken(harness, search);
    assert.equal((await introspect(harness, token)).active, true);
    const searchKey = encodeURIComponent("prod/acme/search:sign");

    // Rotate first, since the primary is the version being revoked.
    assert.equal(
      (await api(harness, "POST", `/v1/keys/${searchKey}/rotate`, { publishDelay: "0s" })).status,
      200,
    );
    const revoked = await api(harness, "POST", `/v1/keys/${searchKey}/versions/1/revoke`, {});
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));

    assert.deepEqual(await introspect(harness, token), { active: false });
    assert.equal(harness.audit.ofType("token.rejected").at(-1)?.details.reason, "key_unusable");
    assert.ok(!(await jwksKids(search.issuer)).includes(`${search.signKeyId}.1`));
    assert.equal(
      (await introspect(harness, (await obtainToken(harness, search)).access_token)).active,
      true,
    );
  });

  test("revoked master version makes its tokens inactive", async () => {
    await createKeys(harness, ["prod/umbrella", "prod/umbrella/billing:sign"]);
    const umbrella = await createService(harness, {
      name: "umbrella",
      environment: "prod",
      tenant: "umbrella",
      service: "billing",
      audiences: ["https://api.example"],
    });
    const { access_token: token } = await obtainToken(harness, umbrella);
    const master = encodeURIComponent("prod/umbrella");
    assert.equal((await api(harness, "POST", `/v1/keys/${master}/rotate`, {})).status, 200);
    assert.equal(
      (await api(harness, "POST", `/v1/keys/${master}/versions/1/revoke`, {})).status,
      200,
    );

    assert.deepEqual(await introspect(harness, token), { active: false });
    assert.deepEqual(await jwksKids(umbrella.issuer), [], "its public key left the JWKS");
    const refused = await postForm(
      harness,
      "/v1/oauth/token",
      "grant_type=client_credentials",
      basic(umbrella.id, umbrella.clientSecret),
    );
    assert.equal(refused.status, 400);
    assert.equal((refused.body as { error: string }).error, "invalid_grant");
  });

  test("token kid must belong to the client's service", async () => {
    // A token signed with search's key but naming billing as its client: what a misused or
    // compromised signer of one service would produce for another.
    const { access_token: genuine } = await obtainToken(harness, billing);
    const claims = { ...split(genuine).payload, iss: search.issuer };
    const searchKey = await harness.storage.keys.findById(search.signKeyId);
    const ref = await harness.deps.keyTree.primaryOf(searchKey!, "sign");
    const header = {
      alg: searchKey!.algorithm,
      typ: "at+jwt",
      kid: `${searchKey!.id}.${ref.version.version}`,
    };
    const input = `${Buffer.from(JSON.stringify(header)).toString("base64url")}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;
    const signature = await harness.deps.keyTree.withMaterial(ref, (pkcs8) =>
      sign(searchKey!.algorithm as SigningAlgorithm, importPrivateKey(pkcs8), Buffer.from(input)),
    );
    const crossed = forge(header, claims, signature);

    assert.deepEqual(await introspect(harness, crossed), { active: false });
    assert.equal(harness.audit.ofType("token.rejected").at(-1)?.details.reason, "client_mismatch");
  });

  test("no token outlives its signing version", async () => {
    const capped = await createService(harness, {
      name: "short",
      environment: "prod",
      tenant: "acme",
      service: "billing",
      audiences: ["https://api.example"],
      maxTokenTtl: "5m",
    });
    const short = await obtainToken(harness, capped);
    assert.equal(short.expires_in, 300, "capped by the principal's maximum");
    const claims = split(short.access_token).payload;
    assert.equal(Number(claims.exp) - Number(claims.iat), 300);
    assert.equal(claims.nbf, claims.iat);
    assert.equal(
      Number(claims.iat),
      Math.floor(harness.clock.now() / 1000),
      "from the injected clock",
    );

    // A primary that must leave the JWKS in 90 s (set directly) caps the token at that moment.
    const retireAt = harness.clock.now() + 90_000;
    const primary = await harness.storage.versions.primary(billing.signKeyId);
    await harness.storage.db
      .updateTable("key_versions")
      .set({ retire_at: retireAt })
      .where("key_id", "=", billing.signKeyId)
      .where("version", "=", primary!.version)
      .execute();
    const token = await obtainToken(harness, billing);
    assert.equal(Number(split(token.access_token).payload.exp), Math.floor(retireAt / 1000));
    assert.ok(token.expires_in <= 90);
    await harness.storage.db
      .updateTable("key_versions")
      .set({ retire_at: null })
      .where("key_id", "=", billing.signKeyId)
      .where("version", "=", primary!.version)
      .execute();

    const tooLong = await api(harness, "POST", "/v1/services", {
      name: "long",
      environment: "prod",
      tenant: "acme",
      service: "billing",
      audiences: ["https://api.example"],
      maxTokenTtl: "1h",
    });
    assert.equal(tooLong.status, 400);
    assert.equal((tooLong.body as { error: { parameter: string } }).error.parameter, "maxTokenTtl");
  });

  test("expiry, not-before and issued-at are checked", async () => {
    const { access_token: token } = await obtainToken(harness, billing);
    harness.clock.advance(15 * MINUTE - 1000);
    assert.equal((await introspect(harness, token)).active, true, "valid until the last second");
    harness.clock.advance(1000);
    assert.deepEqual(await introspect(harness, token), { active: false });
    assert.equal(harness.audit.ofType("token.rejected").at(-1)?.details.reason, "expired");

    const fresh = (await obtainToken(harness, billing)).access_token;
    harness.clock.advance(-1000);
    assert.deepEqual(await introspect(harness, fresh), { active: false }, "nbf is in the future");
    assert.equal(harness.audit.ofType("token.rejected").at(-1)?.details.reason, "not_yet_valid");
    harness.clock.advance(1000);
  });
});
