import assert from "node:assert/strict";
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  verify,
  type JsonWebKey,
} from "node:crypto";
import { describe, test } from "node:test";

import { encodeLengthPrefixed, hkdfSha256 } from "../../src/crypto/index.ts";
import { deriveCheckpointKey } from "../../src/root/checkpoint-key.ts";
import { createSealedRoot } from "../../src/root/sealed-root.ts";
import {
  assertArborError,
  initializedRoot,
  openStoredRootKey,
  recoverUnsealKey,
  unsealWith,
} from "./helpers.ts";

function digestOf(text: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(text).digest());
}

function verifies(jwk: JsonWebKey, digest: Uint8Array, signature: Uint8Array): boolean {
  const publicKey = createPublicKey({ key: jwk, format: "jwk" });
  return verify(null, digest, publicKey, signature);
}

void describe("sealed root audit checkpoint key", () => {
  void test("signature verifies with the checkpoint public key", async () => {
    const { root, shares } = await initializedRoot();
    await unsealWith(root, shares.slice(0, 3));
    const digest = digestOf("tree head 1");

    const signature = await root.signCheckpoint(digest);
    const jwk = await root.checkpointPublicKey();

    assert.equal(jwk.kty, "OKP");
    assert.equal(jwk.crv, "Ed25519");
    assert.equal(jwk.d, undefined, "the JWK has no private part");
    assert.equal(signature.length, 64);
    assert.ok(verifies(jwk, digest, signature));
    assert.ok(!verifies(jwk, digestOf("tree head 2"), signature), "another digest fails");
  });

  void test("public key is the same after seal, rotate and restart", async () => {
    const { root, store, clock, shares } = await initializedRoot();
    await unsealWith(root, shares.slice(0, 3));
    const original = await root.checkpointPublicKey();

    root.seal();
    assert.deepEqual(await root.checkpointPublicKey(), original, "still known while sealed");
    await unsealWith(root, shares.slice(2, 5));
    assert.deepEqual(await root.checkpointPublicKey(), original);

    await root.rotate();
    assert.deepEqual(await root.checkpointPublicKey(), original);
    const signature = await root.signCheckpoint(digestOf("after rotate"));
    assert.ok(verifies(original, digestOf("after rotate"), signature));

    const restarted = await createSealedRoot({ store, clock });
    await unsealWith(restarted, shares.slice(1, 4));
    assert.deepEqual(await restarted.checkpointPublicKey(), original);
  });

  void test("key is derived from root version 1 with HKDF", async () => {
    const { root, store, shares } = await initializedRoot();
    await unsealWith(root, shares.slice(0, 3));
    const rootKey = openStoredRootKey(store, await recoverUnsealKey(shares.slice(0, 3)), 1);

    const seed = hkdfSha256(
      rootKey,
      new Uint8Array(0),
      encodeLengthPrefixed("arbor/audit-checkpoint/v1"),
      32,
    );
    const expected = deriveCheckpointKey(rootKey).publicJwk;

    assert.deepEqual(await root.checkpointPublicKey(), expected);
    // Importing the same seed through node:crypto directly gives the same public key.
    const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]);
    const fromSeed = createPublicKey(
      createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" }),
    );
    assert.deepEqual(fromSeed.export({ format: "jwk" }), expected);
  });

  void test("different deployments have different keys", async () => {
    const first = await initializedRoot();
    const second = await initializedRoot();
    await unsealWith(first.root, first.shares.slice(0, 3));
    await unsealWith(second.root, second.shares.slice(0, 3));

    assert.notDeepEqual(
      await first.root.checkpointPublicKey(),
      await second.root.checkpointPublicKey(),
    );
  });

  void test("before the first unseal both calls are SEALED", async () => {
    const { root } = await initializedRoot();

    await assertArborError(root.checkpointPublicKey(), "SEALED", /after the first unseal/);
    await assertArborError(root.signCheckpoint(digestOf("x")), "SEALED");
  });

  void test("empty digest is INVALID_ARGUMENT", async () => {
    const { root, shares } = await initializedRoot();
    await unsealWith(root, shares.slice(0, 3));

    await assertArborError(
      root.signCheckpoint(new Uint8Array(0)),
      "INVALID_ARGUMENT",
      /^invalid digest "0 bytes"/,
    );
  });
});
