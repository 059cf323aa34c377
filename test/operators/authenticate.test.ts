import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { generateOpaqueSecret } from "../../src/crypto/index.ts";
import {
  hashSecret,
  OPERATOR_TOKEN_REJECTED_MESSAGE,
  UNKNOWN_TOKEN_HASH,
  verifyHash,
  type OperatorAuthenticationFailure,
} from "../../src/operators/index.ts";
import { isArborError } from "../../src/errors/index.ts";
import { dialects } from "../helpers/dialects.ts";
import { CountingHashing, HOUR_MS, mint, openOperators, type OperatorHarness } from "./helpers.ts";

/** Replaces one character of the random part, so the CRC-32 checksum no longer matches. */
function mistype(secret: string): string {
  const index = "arbor_op_".length + 5;
  const replacement = secret[index] === "A" ? "B" : "A";
  return secret.slice(0, index) + replacement + secret.slice(index + 1);
}

async function assertRejected(
  harness: OperatorHarness,
  secret: string,
  reason: OperatorAuthenticationFailure["reason"],
): Promise<void> {
  await assert.rejects(harness.service.authenticate(secret), (error: unknown) => {
    assert.ok(
      isArborError(error, "UNAUTHENTICATED"),
      `expected UNAUTHENTICATED, got ${String(error)}`,
    );
    assert.equal(error.message, OPERATOR_TOKEN_REJECTED_MESSAGE);
    assert.deepEqual(error.detail, {});
    assert.equal((error.cause as OperatorAuthenticationFailure).reason, reason);
    if (secret !== "") {
      assert.ok(!String(error.stack).includes(secret), "stack quotes the secret");
      assert.ok(!JSON.stringify(error.cause).includes(secret), "cause quotes the secret");
    }
    return true;
  });
}

for (const dialect of dialects) {
  void describe(`operator token authentication on ${dialect.name}`, { skip: dialect.skip }, () => {
    let harness: OperatorHarness;

    before(async () => {
      harness = await openOperators(dialect);
    });
    after(() => harness.close());

    void test("root token round trip", async () => {
      const { service, root, rootSecret } = harness;

      assert.match(rootSecret, /^arbor_op_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}$/);
      assert.match(root.id, /^opt_[a-z2-7]{26}$/);
      assert.deepEqual(await service.authenticate(rootSecret), {
        type: "operator",
        id: root.id,
        root: true,
        environment: null,
        tenant: null,
        readOnly: false,
      });
    });

    void test("created token round trip", async () => {
      const { service, root } = harness;

      const { token, info } = await service.create(root, {
        name: "ci deploy",
        ttlMs: HOUR_MS,
        environment: "prod",
        tenant: "acme",
        readOnly: true,
      });

      assert.match(token, /^arbor_op_/);
      assert.deepEqual(await service.authenticate(token), {
        type: "operator",
        id: info.id,
        root: false,
        environment: "prod",
        tenant: "acme",
        readOnly: true,
      });
    });

    void test("stored row holds no secret", async () => {
      const { service, storage, root } = harness;
      const { token, info } = await service.create(root, { name: "scan me", ttlMs: HOUR_MS });
      const randomPart = token.split("_")[2]!;

      const row = await storage.db
        .selectFrom("operator_tokens")
        .selectAll()
        .where("id", "=", info.id)
        .executeTakeFirstOrThrow();

      for (const [column, value] of Object.entries(row)) {
        if (value === null || typeof value === "number") continue;
        const texts =
          typeof value === "string"
            ? [value]
            : [
                Buffer.from(value).toString("utf8"),
                Buffer.from(value).toString("hex"),
                Buffer.from(value).toString("base64"),
              ];
        for (const text of texts) {
          assert.ok(!text.includes(token), `column ${column} contains the secret`);
          assert.ok(!text.includes(randomPart), `column ${column} contains the random part`);
        }
      }
      assert.deepEqual(new Uint8Array(row.secret_hash), hashSecret(token));
    });

    void test("malformed tokens are unauthenticated", async () => {
      const { service } = harness;
      harness.hashing.reset();

      for (const secret of ["", "not-a-token", "arbor_op_short_abcdef", "Bearer x", "arbor_op_"]) {
        await assertRejected(harness, secret, "malformed");
      }
      await assertRejected(harness, generateOpaqueSecret("client"), "malformed");
      await assertRejected(harness, mistype(harness.rootSecret), "malformed");
      await assert.rejects(service.authenticate(42 as unknown as string), (error: unknown) =>
        isArborError(error, "UNAUTHENTICATED"),
      );
      // Shape and checksum are checked before any hashing or database work.
      assert.equal(harness.hashing.digests, 0);
    });

    void test("unknown, expired and revoked are unauthenticated", async () => {
      const { service, root, clock } = harness;

      await assertRejected(harness, generateOpaqueSecret("operator"), "unknown");

      const short = await mint(service, root, { name: "short", ttlMs: HOUR_MS });
      clock.advance(HOUR_MS - 1);
      assert.equal((await service.authenticate(short.secret)).id, short.principal.id);
      clock.advance(1);
      await assertRejected(harness, short.secret, "expired");

      const revoked = await mint(service, root, { name: "revoked", ttlMs: HOUR_MS });
      await service.revoke(root, revoked.principal.id);
      await assertRejected(harness, revoked.secret, "revoked");
    });

    void test("unknown token does the same work", async () => {
      const { service, root, hashing } = harness;
      const known = await mint(service, root, { name: "known", ttlMs: HOUR_MS });

      hashing.reset();
      await service.authenticate(known.secret);
      assert.equal(hashing.digests, 1);
      assert.equal(hashing.comparisons.length, 1);
      assert.deepEqual(new Uint8Array(hashing.comparisons[0]!.stored), hashSecret(known.secret));

      hashing.reset();
      const unknown = generateOpaqueSecret("operator");
      await assert.rejects(service.authenticate(unknown));
      assert.equal(hashing.digests, 1);
      assert.equal(hashing.comparisons.length, 1);
      const comparison = hashing.comparisons[0]!;
      assert.deepEqual(comparison.presented, hashSecret(unknown));
      assert.deepEqual(comparison.stored, UNKNOWN_TOKEN_HASH);
      assert.equal(comparison.stored.length, comparison.presented.length);
    });
  });
}

void describe("verifyHash", () => {
  void test("missing row compares against dummy", () => {
    const hashing = new CountingHashing();

    // Even a digest equal to the dummy hash is no match when there is no stored row.
    assert.equal(verifyHash(hashing, UNKNOWN_TOKEN_HASH, undefined), false);
    assert.equal(hashing.comparisons.length, 1);
    assert.equal(hashing.comparisons[0]!.stored, UNKNOWN_TOKEN_HASH);
  });

  void test("stored row must match", () => {
    const hashing = new CountingHashing();
    const stored = hashSecret("a");

    assert.equal(verifyHash(hashing, hashSecret("a"), stored), true);
    assert.equal(verifyHash(hashing, hashSecret("b"), stored), false);
    assert.equal(hashing.comparisons.length, 2);
  });

  void test("dummy hash is 32 bytes", () => {
    assert.equal(UNKNOWN_TOKEN_HASH.length, 32);
  });
});
