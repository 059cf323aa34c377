import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { verifySignature } from "../../src/crypto/index.ts";
import { sha256SecretHashing, type SecretHashing } from "../../src/operators/index.ts";
import { createTokenVerifier, type TokenVerifier } from "../../src/tokens/index.ts";
import { forge, split } from "./forge.ts";
import {
  basic,
  createKeys,
  createService,
  obtainToken,
  openTokenServer,
  postForm,
  type CreatedService,
  type TokenHarness,
} from "./harness.ts";

/** Counts of the work a verification did, by kind. */
interface WorkCounts {
  keyLookups: number;
  versionLookups: number;
  principalLookups: number;
  signatureChecks: number;
}

describe("order of work in token verification", () => {
  let harness: TokenHarness;
  let service: CreatedService;
  let token: string;
  let counts: WorkCounts;
  let verifier: TokenVerifier;

  before(async () => {
    harness = await openTokenServer();
    await createKeys(harness, ["prod", "prod/initech", "prod/initech/billing:sign"], "ES256");
    service = await createService(harness, {
      name: "initech",
      environment: "prod",
      tenant: "initech",
      service: "billing",
      audiences: ["https://billing.example"],
    });
    token = (await obtainToken(harness, service)).access_token;

    counts = { keyLookups: 0, versionLookups: 0, principalLookups: 0, signatureChecks: 0 };
    const { storage } = harness;
    verifier = createTokenVerifier({
      storage: {
        keys: {
          ...storage.keys,
          findById: (...args) => {
            counts.keyLookups++;
            return storage.keys.findById(...args);
          },
        },
        versions: {
          ...storage.versions,
          find: (...args) => {
            counts.versionLookups++;
            return storage.versions.find(...args);
          },
        },
        servicePrincipals: {
          ...storage.servicePrincipals,
          findById: (...args) => {
            counts.principalLookups++;
            return storage.servicePrincipals.findById(...args);
          },
        },
      },
      clock: harness.clock,
      issuerOfKey: harness.tokens.issuers.issuerOfKey,
      leewaySeconds: 0,
      verifySignature: (...args) => {
        counts.signatureChecks++;
        return verifySignature(...args);
      },
    });
  });

  after(async () => {
    await harness.close();
  });

  function reset(): void {
    counts.keyLookups = 0;
    counts.versionLookups = 0;
    counts.principalLookups = 0;
    counts.signatureChecks = 0;
  }

  test("counters see the work of a valid token", async () => {
    reset();
    const result = await verifier.verify(token);
    assert.equal(result.active, true);
    assert.equal(counts.signatureChecks, 1);
    assert.ok(counts.keyLookups >= 1, "the key was looked up");
    assert.ok(counts.versionLookups >= 1, "the version was looked up");
    assert.ok(counts.principalLookups >= 1, "the client was looked up");
  });

  test("token header is checked before any key work", async () => {
    const kid = `${service.signKeyId}.1`;
    const { payload, signature } = split(token);
    const segments = (header: unknown): string[] => [
      Buffer.from(JSON.stringify(header)).toString("base64url"),
      "a2V5",
      "aXY",
      "Y2lwaGVydGV4dA",
      "dGFn",
    ];
    const bombs: Array<[string, string, string]> = [
      [
        "JWE with PBES2 and p2c 2147483647",
        segments({
          alg: "PBES2-HS512+A256KW",
          enc: "A256GCM",
          p2c: 2147483647,
          p2s: "c2FsdA",
          kid,
        }).join("."),
        "malformed",
      ],
      [
        "JWS with PBES2 and p2c 2147483647",
        forge(
          { alg: "PBES2-HS256+A128KW", typ: "at+jwt", p2c: 2147483647, p2s: "c2FsdA", kid },
          payload,
          signature,
        ),
        "unsupported_alg",
      ],
      [
        "JWE with zip DEF",
        segments({ alg: "dir", enc: "A128GCM", zip: "DEF", kid }).join("."),
        "malformed",
      ],
      [
        "JWS with zip DEF",
        forge({ alg: "ES256", typ: "at+jwt", zip: "DEF", kid }, payload, signature),
        "unsupported_header",
      ],
      [
        "JWS with a 2 MB header",
        forge(
          { alg: "ES256", typ: "at+jwt", kid, pad: "x".repeat(2 * 1024 * 1024) },
          payload,
          signature,
        ),
        "too_large",
      ],
      [
        "JWS with crit",
        forge({ alg: "ES256", typ: "at+jwt", kid, crit: ["b64"], b64: false }, payload, signature),
        "unsupported_header",
      ],
      [
        "unsigned JWS",
        forge({ alg: "none", typ: "at+jwt", kid }, payload, new Uint8Array()),
        "unsupported_alg",
      ],
    ];

    for (const [name, bomb, reason] of bombs) {
      reset();
      const result = await verifier.verify(bomb);
      assert.equal(result.active, false, name);
      assert.equal(result.active ? null : result.rejection.reason, reason, name);
      assert.deepEqual(
        counts,
        { keyLookups: 0, versionLookups: 0, principalLookups: 0, signatureChecks: 0 },
        `${name}: no key look-up or signature work`,
      );
    }
  });

  test("token code has no decryption or inflation", () => {
    // Structural: nothing under src/tokens can decrypt a JWE or inflate a payload.
    const folder = join(import.meta.dirname, "../../src/tokens");
    for (const file of readdirSync(folder)) {
      const source = readFileSync(join(folder, file), "utf8");
      assert.doesNotMatch(
        source,
        /jwtDecrypt|compactDecrypt|flattenedDecrypt|generalDecrypt/,
        file,
      );
      assert.doesNotMatch(source, /node:zlib|inflate|pbkdf2/i, file);
    }
  });
});

/** Returns a SecretHashing that counts digests and comparisons. */
function countingHashing(): SecretHashing & { digests: number; comparisons: number } {
  const hashing = {
    digests: 0,
    comparisons: 0,
    digest(secret: string) {
      hashing.digests++;
      return sha256SecretHashing.digest(secret);
    },
    equal(a: Uint8Array, b: Uint8Array) {
      hashing.comparisons++;
      return sha256SecretHashing.equal(a, b);
    },
  };
  return hashing;
}

describe("client authentication work", () => {
  let harness: TokenHarness;
  let hashing: ReturnType<typeof countingHashing>;
  let service: CreatedService;
  let other: CreatedService;
  const lookups = { principals: 0, secrets: 0 };

  before(async () => {
    hashing = countingHashing();
    harness = await openTokenServer({ secretHashing: hashing });
    await createKeys(harness, [
      "prod",
      "prod/acme",
      "prod/acme/billing:sign",
      "prod/acme/search:sign",
    ]);
    const fields = { environment: "prod", tenant: "acme", audiences: ["https://api.example"] };
    service = await createService(harness, { ...fields, name: "billing", service: "billing" });
    other = await createService(harness, { ...fields, name: "search", service: "search" });

    const repository = harness.storage.servicePrincipals;
    const findById = repository.findById.bind(repository);
    const findSecretByHash = repository.findSecretByHash.bind(repository);
    repository.findById = (...args) => {
      lookups.principals++;
      return findById(...args);
    };
    repository.findSecretByHash = (...args) => {
      lookups.secrets++;
      return findSecretByHash(...args);
    };
  });

  after(async () => {
    await harness.close();
  });

  /** Requests a token and returns the status and the work done by client authentication. */
  async function attempt(clientId: string, secret: string) {
    hashing.digests = 0;
    hashing.comparisons = 0;
    lookups.principals = 0;
    lookups.secrets = 0;
    const response = await postForm(
      harness,
      "/v1/oauth/token",
      "grant_type=client_credentials",
      basic(clientId, secret),
    );
    return {
      status: response.status,
      error: (response.body as { error?: string }).error,
      work: { ...lookups, digests: hashing.digests, comparisons: hashing.comparisons },
    };
  }

  test("unknown client ids cost the same work", async () => {
    const wrongSecret = "arbor_cs_" + "A".repeat(43) + "_000000";
    const unknown = await attempt("svc_aaaaaaaaaaaaaaaaaaaaaaaaaa", service.clientSecret);
    const wrong = await attempt(service.id, wrongSecret);
    const crossed = await attempt(service.id, other.clientSecret);

    const expected = { principals: 1, secrets: 1, digests: 1, comparisons: 1 };
    for (const [name, outcome] of [
      ["unknown client id", unknown],
      ["known id with a wrong secret", wrong],
      ["known id with another client's secret", crossed],
    ] as const) {
      assert.equal(outcome.status, 401, name);
      assert.equal(outcome.error, "invalid_client", name);
      assert.deepEqual(outcome.work, expected, `${name}: one hash and one comparison`);
    }

    const valid = await attempt(service.id, service.clientSecret);
    assert.equal(valid.status, 200);
    assert.deepEqual(valid.work, expected, "a valid secret costs the same work");
  });

  test("failed client authentication is audited without the secret", async () => {
    await attempt(service.id, "arbor_cs_not-a-real-secret");
    const event = harness.audit.ofType("token.issued").at(-1)!;
    assert.equal(event.outcome, "failure");
    assert.equal(event.errorCode, "UNAUTHENTICATED");
    assert.equal(event.details.reason, "malformed");
    assert.equal(event.details.clientId, service.id);
    assert.equal(event.details.method, "client_secret_basic");
    assert.ok(!JSON.stringify(event).includes("not-a-real-secret"));
  });
});
