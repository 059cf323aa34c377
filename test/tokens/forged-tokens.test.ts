import assert from "node:assert/strict";
import { createPublicKey, type JsonWebKey } from "node:crypto";
import { once } from "node:events";
import { createServer, type AddressInfo, type Server } from "node:net";
import { after, before, describe, test } from "node:test";

import type { AuditEvent } from "../../src/audit/types.ts";
import {
  attackerKey,
  es256,
  forge,
  hs256,
  p1363ToDer,
  P256_ORDER,
  split,
  withSignature,
} from "./forge.ts";
import {
  api,
  createKeys,
  createService,
  introspect,
  obtainToken,
  openTokenServer,
  type CreatedService,
  type TokenHarness,
} from "./harness.ts";

const EDDSA_ENCRYPT = encodeURIComponent("prod/acme/billing:encrypt");

describe("forged and malformed tokens", () => {
  let harness: TokenHarness;
  let acme: CreatedService;
  let initech: CreatedService;
  /** A valid EdDSA token of acme and a valid ES256 token of initech. */
  let eddsaToken: string;
  let es256Token: string;
  let jwks: Map<string, JsonWebKey & { kid: string }>;

  before(async () => {
    harness = await openTokenServer();
    await createKeys(harness, ["prod", "prod/acme", "prod/acme/billing:sign"]);
    await createKeys(harness, ["prod/acme/billing:encrypt"]);
    await createKeys(harness, ["prod/initech", "prod/initech/billing:sign"], "ES256");
    const audiences = [`${harness.base}/v1`];
    acme = await createService(harness, {
      name: "acme",
      environment: "prod",
      tenant: "acme",
      service: "billing",
      audiences,
    });
    initech = await createService(harness, {
      name: "initech",
      environment: "prod",
      tenant: "initech",
      service: "billing",
      audiences,
    });
    eddsaToken = (await obtainToken(harness, acme)).access_token;
    es256Token = (await obtainToken(harness, initech)).access_token;

    jwks = new Map();
    for (const issuer of [acme.issuer, initech.issuer]) {
      const response = await fetch(`${issuer}/jwks`);
      const body = (await response.json()) as { keys: Array<JsonWebKey & { kid: string }> };
      for (const key of body.keys) jwks.set(key.kid, key);
    }
  });

  after(async () => {
    await harness.close();
  });

  function eddsaKid(): string {
    return `${acme.signKeyId}.1`;
  }

  function es256Kid(): string {
    return `${initech.signKeyId}.1`;
  }

  /**
   * Asserts that introspection returns exactly `{ active: false }`, that the token is 401 on a
   * protected route, and that both rejections were audited with `reason` and nothing of the
   * token beyond its kid.
   */
  async function assertRejected(token: string, reason: string): Promise<void> {
    const before = harness.audit.ofType("token.rejected").length;

    assert.deepEqual(await introspect(harness, token), { active: false });
    const response = await fetch(`${harness.base}/v1/keys/${EDDSA_ENCRYPT}/encrypt`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ plaintext: "aGVsbG8=" }),
    });
    assert.equal(response.status, 401);
    const body = (await response.json()) as { error: { code: string } };
    assert.equal(body.error.code, "UNAUTHENTICATED");

    const events = harness.audit.ofType("token.rejected").slice(before);
    assert.equal(events.length, 2, "one token.rejected event per rejection");
    for (const event of events) assertRejectionEvent(event, reason, token);
  }

  function assertRejectionEvent(event: AuditEvent, reason: string, token: string): void {
    assert.equal(event.outcome, "failure");
    assert.equal(event.details.reason, reason);
    assert.deepEqual(Object.keys(event.details).sort(), ["action", "kid", "reason"]);
    const recorded = JSON.stringify(event);
    for (const part of token.split(".").filter((piece) => piece.length > 8)) {
      assert.ok(!recorded.includes(part), "the audit event must not contain the token");
    }
  }

  async function failureCount(reason: string): Promise<number> {
    const metric = await harness.deps.metrics.tokenValidationFailures.get();
    return metric.values.find((value) => value.labels.reason === reason)?.value ?? 0;
  }

  test("valid tokens pass the same checks", async () => {
    for (const token of [eddsaToken, es256Token]) {
      assert.equal((await introspect(harness, token)).active, true);
    }
    const response = await api(
      harness,
      "POST",
      `/v1/keys/${EDDSA_ENCRYPT}/encrypt`,
      { plaintext: "aGVsbG8=" },
      eddsaToken,
    );
    assert.equal(response.status, 200, JSON.stringify(response.body));
  });

  test("unsigned tokens are rejected", async () => {
    const { payload } = split(eddsaToken);
    const before = await failureCount("unsupported_alg");
    for (const alg of ["none", "None", "NONE", "nOnE"]) {
      const header = { alg, typ: "at+jwt", kid: eddsaKid() };
      await assertRejected(forge(header, payload, new Uint8Array()), "unsupported_alg");
    }
    // A header without `alg` at all, and a valid header with an empty signature.
    await assertRejected(
      forge({ typ: "at+jwt", kid: eddsaKid() }, payload, new Uint8Array()),
      "unsupported_alg",
    );
    await assertRejected(withSignature(eddsaToken, new Uint8Array()), "malformed");
    assert.equal(await failureCount("unsupported_alg"), before + 10);
  });

  test("HMAC with a public key as secret is rejected", async () => {
    for (const [kid, token] of [
      [eddsaKid(), eddsaToken],
      [es256Kid(), es256Token],
    ] as const) {
      const jwk = jwks.get(kid)!;
      const { payload } = split(token);
      const pem = createPublicKey({ key: jwk, format: "jwk" }).export({
        type: "spki",
        format: "pem",
      });
      const secrets = [
        JSON.stringify(jwk),
        JSON.stringify({
          kty: jwk.kty,
          crv: jwk.crv,
          x: jwk.x,
          ...(jwk.y === undefined ? {} : { y: jwk.y }),
        }),
        String(pem),
        Buffer.from(jwk.x!, "base64url"),
      ];
      for (const secret of secrets) {
        const header = { alg: "HS256", typ: "at+jwt", kid };
        await assertRejected(hs256(header, payload, secret), "unsupported_alg");
      }
    }
  });

  test("header alg differing from the key is rejected", async () => {
    // An ES256 signature by an attacker's key under the kid of an EdDSA key.
    const { payload } = split(eddsaToken);
    const token = es256(
      { alg: "ES256", typ: "at+jwt", kid: eddsaKid() },
      payload,
      attackerKey().privateKey,
    );
    await assertRejected(token, "alg_mismatch");
  });

  test("embedded jwk header is ignored", async () => {
    const attacker = attackerKey();
    const attackerJwk = attacker.publicKey.export({ format: "jwk" });
    const { payload } = split(es256Token);
    const header = { alg: "ES256", typ: "at+jwt", kid: es256Kid(), jwk: attackerJwk };
    await assertRejected(es256(header, payload, attacker.privateKey), "bad_signature");

    // The attacker's own key id is not a key of this deployment either.
    const ownKid = {
      alg: "ES256",
      typ: "at+jwt",
      kid: "key_aaaaaaaaaaaaaaaaaaaaaaaaaa.1",
      jwk: attackerJwk,
    };
    await assertRejected(es256(ownKid, payload, attacker.privateKey), "unknown_kid");
  });

  test("jku and x5u make no outbound request", async () => {
    const connections: number[] = [];
    const listener: Server = createServer((socket) => {
      connections.push(Date.now());
      socket.destroy();
    });
    listener.listen(0, "127.0.0.1");
    await once(listener, "listening");
    const { port } = listener.address() as AddressInfo;
    try {
      const attacker = attackerKey();
      const { payload } = split(es256Token);
      const targets = [`http://127.0.0.1:${port}/jwks.json`, "http://127.0.0.1:9/"];
      for (const url of targets) {
        for (const parameter of ["jku", "x5u"]) {
          const header = { alg: "ES256", typ: "at+jwt", kid: es256Kid(), [parameter]: url };
          await assertRejected(es256(header, payload, attacker.privateKey), "bad_signature");
        }
      }
      const x5c = { alg: "ES256", typ: "at+jwt", kid: es256Kid(), x5c: ["MIIBszCCAVmgAwIBAgIU"] };
      await assertRejected(es256(x5c, payload, attacker.privateKey), "bad_signature");
    } finally {
      listener.close();
    }
    assert.equal(connections.length, 0, "no connection may reach the jku or x5u target");
  });

  test("zero and out-of-range ECDSA signatures are rejected", async () => {
    const valid = split(es256Token).signature;
    const r = valid.subarray(0, 32);
    const s = valid.subarray(32);
    const zero = Buffer.alloc(32);
    const cases: Array<[string, Buffer]> = [
      ["r = s = 0", Buffer.alloc(64)],
      ["r = n, s = n", Buffer.concat([P256_ORDER, P256_ORDER])],
      ["r = n", Buffer.concat([P256_ORDER, s])],
      ["s = n", Buffer.concat([r, P256_ORDER])],
      ["s = 0", Buffer.concat([r, zero])],
      ["r = 0", Buffer.concat([zero, s])],
    ];
    for (const [name, signature] of cases) {
      assert.equal(signature.length, 64, name);
      await assertRejected(withSignature(es256Token, signature), "bad_signature");
    }
  });

  test("non-canonical ECDSA signatures are rejected", async () => {
    const valid = split(es256Token).signature;
    const cases: Array<[string, Buffer]> = [
      ["one extra byte", Buffer.concat([valid, Buffer.from([0])])],
      ["DER encoding", p1363ToDer(valid)],
      ["truncated by one byte", valid.subarray(0, 63)],
    ];
    for (const [name, signature] of cases) {
      assert.notEqual(signature.length, 64, name);
      await assertRejected(withSignature(es256Token, signature), "bad_signature");
    }
    assert.equal(
      (await introspect(harness, es256Token)).active,
      true,
      "the original still verifies",
    );
  });

  test("work-factor bombs are rejected by the header checks", async () => {
    const { payload } = split(es256Token);
    const pbes2 = {
      alg: "PBES2-HS512+A256KW",
      enc: "A256GCM",
      p2c: 2147483647,
      p2s: "c2FsdA",
      kid: es256Kid(),
    };
    // A JWE (five segments) is never decrypted.
    await assertRejected(jwe(pbes2), "malformed");
    await assertRejected(
      forge({ ...pbes2, typ: "at+jwt" }, payload, new Uint8Array(64)),
      "unsupported_alg",
    );

    const deflate = { alg: "ES256", typ: "at+jwt", kid: es256Kid(), zip: "DEF" };
    await assertRejected(
      forge(deflate, payload, split(es256Token).signature),
      "unsupported_header",
    );
    await assertRejected(
      jwe({ alg: "dir", enc: "A128GCM", zip: "DEF", kid: es256Kid() }),
      "malformed",
    );

    const crit = { alg: "ES256", typ: "at+jwt", kid: es256Kid(), crit: ["exp"] };
    await assertRejected(forge(crit, payload, split(es256Token).signature), "unsupported_header");

    // 10 KB fits the body limit of this server and exceeds the 8 KiB token limit.
    const padded = { alg: "ES256", typ: "at+jwt", kid: es256Kid(), pad: "x".repeat(10_000) };
    await assertRejected(forge(padded, payload, split(es256Token).signature), "too_large");
  });

  test("wrong typ and malformed kid are rejected", async () => {
    const { payload, signature } = split(es256Token);
    await assertRejected(
      forge({ alg: "ES256", typ: "JWT", kid: es256Kid() }, payload, signature),
      "unsupported_typ",
    );
    await assertRejected(
      forge({ alg: "ES256", kid: es256Kid() }, payload, signature),
      "unsupported_typ",
    );
    await assertRejected(
      forge({ alg: "ES256", typ: "at+jwt", kid: "prod/initech/billing:sign" }, payload, signature),
      "malformed",
    );
    await assertRejected(forge({ alg: "ES256", typ: "at+jwt" }, payload, signature), "malformed");
    // `application/at+jwt` in any letter case passes the typ check; the changed header then
    // breaks the signature.
    const longForm = forge(
      { alg: "ES256", typ: "Application/AT+JWT", kid: es256Kid() },
      payload,
      signature,
    );
    await assertRejected(longForm, "bad_signature");
  });
});

/** Builds a five-segment JWE compact serialization with `header` and placeholder segments. */
function jwe(header: Record<string, unknown>): string {
  const placeholders = ["a2V5", "aXY", "Y2lwaGVydGV4dA", "dGFn"];
  return [Buffer.from(JSON.stringify(header)).toString("base64url"), ...placeholders].join(".");
}
