import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { aesGcmOpen, encodeLengthPrefixed } from "../../src/crypto/index.ts";
import { createSealedRoot } from "../../src/root/sealed-root.ts";
import type { WrappedBlob } from "../../src/root/types.ts";
import {
  assertArborError,
  includesBytes,
  initializedRoot,
  openStoredRootKey,
  recordZeroedBuffers,
  recoverUnsealKey,
  unsealWith,
} from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function unsealedRoot(): Promise<Awaited<ReturnType<typeof initializedRoot>>> {
  const setup = await initializedRoot();
  await unsealWith(setup.root, setup.shares.slice(0, 3));
  return setup;
}

void describe("sealed root wrap and unwrap", () => {
  void test("round trip returns the plaintext", async () => {
    const { root } = await unsealedRoot();
    const plaintext = encoder.encode("master key material");
    const aad = encoder.encode("master/prod/v1");

    const blob = await root.wrap(plaintext, aad);
    const opened = await root.unwrap(blob, aad);

    assert.equal(blob.rootVersion, 1);
    assert.equal(blob.ciphertext.length, 12 + plaintext.length + 16);
    assert.equal(decoder.decode(opened), "master key material");
    assert.equal(decoder.decode(plaintext), "master key material", "the input is not modified");
  });

  void test("two wraps of the same plaintext differ", async () => {
    const { root } = await unsealedRoot();
    const aad = encoder.encode("a");

    const first = await root.wrap(encoder.encode("same"), aad);
    const second = await root.wrap(encoder.encode("same"), aad);

    assert.notDeepEqual(first.ciphertext, second.ciphertext);
  });

  void test("unwrap returns a buffer the caller may zero", async () => {
    const { root } = await unsealedRoot();
    const aad = encoder.encode("a");
    const blob = await root.wrap(encoder.encode("secret"), aad);

    (await root.unwrap(blob, aad)).fill(0);

    assert.equal(decoder.decode(await root.unwrap(blob, aad)), "secret");
  });

  void test("different AAD is STORED_KEY_CORRUPT", async () => {
    const { root } = await unsealedRoot();
    const blob = await root.wrap(encoder.encode("k"), encoder.encode("prod/acme"));

    const error = await assertArborError(
      root.unwrap(blob, encoder.encode("prod/other")),
      "STORED_KEY_CORRUPT",
      /^stored blob under root version 1 failed to unwrap/,
    );
    assert.equal(error.status, 500);
  });

  void test("modified blob is STORED_KEY_CORRUPT without the blob in the message", async () => {
    const { root } = await unsealedRoot();
    const aad = encoder.encode("a");
    const blob = await root.wrap(encoder.encode("key"), aad);

    for (const index of [0, 12, blob.ciphertext.length - 1]) {
      const ciphertext = Uint8Array.from(blob.ciphertext);
      ciphertext[index] = (ciphertext[index] ?? 0) ^ 0x01;

      const error = await assertArborError(
        root.unwrap({ rootVersion: 1, ciphertext }, aad),
        "STORED_KEY_CORRUPT",
        /root version 1/,
      );
      const hex = Buffer.from(ciphertext).toString("hex");
      const base64 = Buffer.from(ciphertext).toString("base64");
      assert.ok(!error.message.includes(hex.slice(0, 16)));
      assert.ok(!error.message.includes(base64.slice(0, 16)));
    }

    await assertArborError(
      root.unwrap({ rootVersion: 1, ciphertext: blob.ciphertext.subarray(0, 20) }, aad),
      "STORED_KEY_CORRUPT",
    );
  });

  void test("blob labelled with another root version is STORED_KEY_CORRUPT", async () => {
    const { root } = await unsealedRoot();
    const aad = encoder.encode("a");
    const blob = await root.wrap(encoder.encode("key"), aad);
    await root.rotate();

    await assertArborError(
      root.unwrap({ rootVersion: 2, ciphertext: blob.ciphertext }, aad),
      "STORED_KEY_CORRUPT",
      /root version 2/,
    );
  });

  void test("unknown or invalid root version is STORED_KEY_CORRUPT", async () => {
    const { root } = await unsealedRoot();
    const blob = await root.wrap(encoder.encode("key"), new Uint8Array());

    await assertArborError(
      root.unwrap({ ...blob, rootVersion: 99 }, new Uint8Array()),
      "STORED_KEY_CORRUPT",
      /root version 99 failed to unwrap: that root version does not exist/,
    );
    for (const rootVersion of [0, -1, 1.5, Number.NaN]) {
      await assertArborError(
        root.unwrap({ ...blob, rootVersion }, new Uint8Array()),
        "STORED_KEY_CORRUPT",
        /not a valid root version number/,
      );
    }
  });

  void test("blob of another deployment is STORED_KEY_CORRUPT", async () => {
    const first = await unsealedRoot();
    const second = await unsealedRoot();
    const aad = encoder.encode("a");
    const blob = await first.root.wrap(encoder.encode("key"), aad);

    await assertArborError(second.root.unwrap(blob, aad), "STORED_KEY_CORRUPT");
  });

  void test("wrap binds the root version into the AAD", async () => {
    const { root, store, shares } = await unsealedRoot();
    const aad = encoder.encode("prod");
    const blob = await root.wrap(encoder.encode("key"), aad);

    // Decrypting with the recovered root key and the documented AAD layout works.
    const rootKey = openStoredRootKey(store, await recoverUnsealKey(shares.slice(0, 3)), 1);
    const opened = aesGcmOpen(
      rootKey,
      blob.ciphertext,
      encodeLengthPrefixed("arbor/root-wrap/v1", 1, aad),
    );
    assert.equal(decoder.decode(opened), "key");
    // Without the version and format tag it does not.
    assert.throws(() => aesGcmOpen(rootKey, blob.ciphertext, aad));
  });
});

void describe("sealed root seal", () => {
  void test("operations after seal are SEALED", async () => {
    const { root } = await unsealedRoot();
    const aad = encoder.encode("a");
    const blob = await root.wrap(encoder.encode("key"), aad);

    root.seal();

    assert.equal(root.status().state, "sealed");
    await assertArborError(root.wrap(encoder.encode("key"), aad), "SEALED", /is sealed/);
    await assertArborError(root.unwrap(blob, aad), "SEALED");
    await assertArborError(root.rotate(), "SEALED");
    await assertArborError(root.signCheckpoint(new Uint8Array(32)), "SEALED");
  });

  void test("a fresh unseal unwraps blobs from before the seal", async () => {
    const { root, shares } = await unsealedRoot();
    const aad = encoder.encode("a");
    const blob = await root.wrap(encoder.encode("kept"), aad);

    root.seal();
    await unsealWith(root, shares.slice(2, 5));

    assert.equal(decoder.decode(await root.unwrap(blob, aad)), "kept");
  });

  void test("seal discards a ceremony in progress", async () => {
    const { root, shares } = await initializedRoot();
    const { nonce } = root.beginUnseal();
    await root.submit(nonce, shares[0]!);

    const zeroed = await recordZeroedBuffers(() => root.seal());

    assert.equal(root.status().ceremony, null);
    assert.ok(includesBytes(zeroed, shares[0]!), "the pending share was zeroed");
  });

  void test("seal is idempotent", async () => {
    const { root } = await unsealedRoot();
    root.seal();
    root.seal();
    assert.equal(root.status().state, "sealed");
  });
});

void describe("sealed root rotate", () => {
  void test("new version wraps and old blobs still unwrap", async () => {
    const { root, store, clock } = await unsealedRoot();
    const aad = encoder.encode("a");
    const old = await root.wrap(encoder.encode("old"), aad);
    clock.advance(1000);

    const rotated = await root.rotate();

    assert.deepEqual(rotated, { version: 2, createdAt: clock.now() });
    assert.equal(root.status().rootVersion, 2);
    const fresh = await root.wrap(encoder.encode("new"), aad);
    assert.equal(fresh.rootVersion, 2);
    assert.equal(decoder.decode(await root.unwrap(old, aad)), "old");
    assert.equal(decoder.decode(await root.unwrap(fresh, aad)), "new");
    assert.deepEqual(
      store.snapshot().versions.map((v) => v.version),
      [1, 2],
    );
  });

  void test("both versions work after seal and unseal", async () => {
    const { root, store, clock, shares } = await unsealedRoot();
    const aad = encoder.encode("a");
    const v1 = await root.wrap(encoder.encode("one"), aad);
    await root.rotate();
    const v2 = await root.wrap(encoder.encode("two"), aad);

    root.seal();
    assert.equal(root.status().rootVersion, 2, "status shows the current version while sealed");
    await unsealWith(root, shares.slice(0, 3));
    assert.equal(decoder.decode(await root.unwrap(v1, aad)), "one");
    assert.equal(decoder.decode(await root.unwrap(v2, aad)), "two");
    assert.equal((await root.wrap(encoder.encode("x"), aad)).rootVersion, 2);

    // A restarted node loads and opens both versions too.
    const restarted = await createSealedRoot({ store, clock });
    assert.equal(restarted.status().rootVersion, 2);
    await unsealWith(restarted, shares.slice(1, 4));
    assert.equal(decoder.decode(await restarted.unwrap(v1, aad)), "one");
    assert.equal(decoder.decode(await restarted.unwrap(v2, aad)), "two");
  });

  void test("the new version's key is sealed under the unseal key and zeroed on seal", async () => {
    const { root, store, shares } = await unsealedRoot();
    await root.rotate();
    const unsealKey = await recoverUnsealKey(shares.slice(0, 3));
    const rootKeyV2 = openStoredRootKey(store, unsealKey, 2);
    const rootKeyV1 = openStoredRootKey(store, unsealKey, 1);
    assert.notDeepEqual(rootKeyV1, rootKeyV2);

    const zeroed = await recordZeroedBuffers(() => root.seal());

    assert.ok(includesBytes(zeroed, rootKeyV1));
    assert.ok(includesBytes(zeroed, rootKeyV2));
    assert.ok(includesBytes(zeroed, unsealKey));
  });

  void test("concurrent rotations take distinct versions", async () => {
    const { root, store } = await unsealedRoot();

    const versions = await Promise.all([root.rotate(), root.rotate(), root.rotate()]);

    assert.deepEqual(
      versions.map((v) => v.version),
      [2, 3, 4],
    );
    assert.equal(root.status().rootVersion, 4);
    assert.deepEqual(
      store.snapshot().versions.map((v) => v.version),
      [1, 2, 3, 4],
    );
  });

  void test("a node learns versions another node added", async () => {
    const { root: nodeA, store, clock, shares } = await unsealedRoot();
    const nodeB = await createSealedRoot({ store, clock });
    await unsealWith(nodeB, shares.slice(0, 3));
    const aad = encoder.encode("a");

    await nodeA.rotate();
    const fromA: WrappedBlob = await nodeA.wrap(encoder.encode("from A"), aad);
    assert.equal(fromA.rootVersion, 2);
    assert.equal(nodeB.status().rootVersion, 1, "node B has not seen version 2 yet");

    assert.equal(decoder.decode(await nodeB.unwrap(fromA, aad)), "from A");
    assert.equal(nodeB.status().rootVersion, 2);
    assert.equal((await nodeB.wrap(encoder.encode("b"), aad)).rootVersion, 2);

    const rotatedByB = await nodeB.rotate();
    assert.equal(rotatedByB.version, 3);
    const fromB = await nodeB.wrap(encoder.encode("from B"), aad);
    assert.equal(decoder.decode(await nodeA.unwrap(fromB, aad)), "from B");
  });

  void test("rotate picks the next version after one stored by another node", async () => {
    const { root: nodeA, store, clock, shares } = await unsealedRoot();
    const nodeB = await createSealedRoot({ store, clock });
    await unsealWith(nodeB, shares.slice(0, 3));

    await nodeA.rotate();
    const rotated = await nodeB.rotate();

    assert.equal(rotated.version, 3);
  });

  void test("a failed store write leaves the current version", async () => {
    const { root, store } = await unsealedRoot();
    store.addVersion = () => Promise.reject(new Error("disk full"));

    await assert.rejects(root.rotate(), /disk full/);

    assert.equal(root.status().rootVersion, 1);
    assert.equal((await root.wrap(encoder.encode("x"), new Uint8Array())).rootVersion, 1);
  });
});
