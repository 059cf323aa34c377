import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { combine } from "shamir-secret-sharing";

import { aesGcmOpen, encodeLengthPrefixed, hkdfSha256 } from "../../src/crypto/index.ts";
import { createSealedRoot } from "../../src/root/sealed-root.ts";
import { decodeUnsealShare, UNSEAL_SHARE_BYTES } from "../../src/root/unseal-shares.ts";
import { FakeClock } from "../helpers/clock.ts";
import {
  assertArborError,
  containsBytes,
  includesBytes,
  initializedRoot,
  isAllZero,
  openStoredRootKey,
  recordZeroedBuffers,
  recoverUnsealKey,
  unsealWith,
} from "./helpers.ts";
import { MemorySealedRootStore } from "./memory-store.ts";

void describe("sealed root initialize", () => {
  void test("status before initialize is uninitialized", async () => {
    const root = await createSealedRoot({
      store: new MemorySealedRootStore(),
      clock: new FakeClock(),
    });

    assert.deepEqual(root.status(), {
      state: "uninitialized",
      provider: "sealed",
      rootVersion: null,
      threshold: null,
      ceremony: null,
    });
    await assertArborError(() => root.beginUnseal(), "NOT_INITIALIZED", /not initialized/);
    await assertArborError(root.wrap(new Uint8Array(32), new Uint8Array()), "NOT_INITIALIZED");
  });

  void test("defaults to 5 shares with threshold 3", async () => {
    const store = new MemorySealedRootStore();
    const clock = new FakeClock();
    const root = await createSealedRoot({ store, clock });

    const result = await root.initialize();

    assert.equal(result.shares.length, 5);
    assert.equal(result.threshold, 3);
    assert.equal(result.rootVersion, 1);
    for (const text of result.shares) {
      assert.match(text, /^[A-Za-z0-9+/]+=*$/);
      assert.equal(decodeUnsealShare(text).length, UNSEAL_SHARE_BYTES);
    }
    assert.equal(new Set(result.shares).size, 5, "every share is different");

    const stored = store.snapshot();
    assert.equal(stored.record?.shares, 5);
    assert.equal(stored.record?.threshold, 3);
    assert.equal(stored.record?.createdAt, clock.now());
    assert.deepEqual(
      stored.versions.map((v) => v.version),
      [1],
    );
  });

  void test("stays sealed after initialize", async () => {
    const { root } = await initializedRoot();

    assert.deepEqual(root.status(), {
      state: "sealed",
      provider: "sealed",
      rootVersion: 1,
      threshold: 3,
      ceremony: null,
    });
    await assertArborError(root.wrap(new Uint8Array(32), new Uint8Array()), "SEALED", /sealed/);
  });

  void test("honours custom shares and threshold", async () => {
    const { shares, threshold, store } = await initializedRoot({ shares: 7, threshold: 4 });

    assert.equal(shares.length, 7);
    assert.equal(threshold, 4);
    assert.equal(store.snapshot().record?.threshold, 4);
  });

  void test("second initialize is ALREADY_INITIALIZED", async () => {
    const { root, store } = await initializedRoot();
    const before = store.snapshot();

    await assertArborError(root.initialize(), "ALREADY_INITIALIZED", /already initialized/);
    assert.deepEqual(store.snapshot(), before, "the stored root is unchanged");
  });

  void test("initialize on a store another node initialized is ALREADY_INITIALIZED", async () => {
    const store = new MemorySealedRootStore();
    const clock = new FakeClock();
    const nodeA = await createSealedRoot({ store, clock });
    const nodeB = await createSealedRoot({ store, clock });

    await nodeA.initialize();

    await assertArborError(nodeB.initialize(), "ALREADY_INITIALIZED");
    assert.equal(nodeB.status().state, "sealed", "node B learned that the root exists");
  });

  void test("concurrent initialize calls create one root", async () => {
    const root = await createSealedRoot({
      store: new MemorySealedRootStore(),
      clock: new FakeClock(),
    });

    const results = await Promise.allSettled([root.initialize(), root.initialize()]);

    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    const rejected = results.find((r) => r.status === "rejected");
    assert.equal((rejected?.reason as { code?: string }).code, "ALREADY_INITIALIZED");
  });

  for (const [options, parameter, value] of [
    [{ shares: 1, threshold: 1 }, "shares", "1"],
    [{ shares: 256, threshold: 3 }, "shares", "256"],
    [{ shares: 2.5, threshold: 2 }, "shares", "2.5"],
    [{ shares: 5, threshold: 1 }, "threshold", "1"],
    [{ shares: 5, threshold: 6 }, "threshold", "6"],
    [{ shares: 5, threshold: Number.NaN }, "threshold", "NaN"],
  ] as const) {
    void test(`rejects ${parameter} ${value}`, async () => {
      const store = new MemorySealedRootStore();
      const root = await createSealedRoot({ store, clock: new FakeClock() });

      const error = await assertArborError(
        root.initialize(options),
        "INVALID_ARGUMENT",
        new RegExp(`^invalid ${parameter} `),
      );
      assert.equal(error.detail.parameter, parameter);
      assert.equal(String(error.detail.value), value);
      assert.equal(store.snapshot().record, null, "nothing was stored");
      assert.equal(root.status().state, "uninitialized");
    });
  }

  void test("accepts the extremes 2 of 2 and 255 of 255", async () => {
    const small = await initializedRoot({ shares: 2, threshold: 2 });
    assert.equal(small.shares.length, 2);

    const large = await initializedRoot({ shares: 255, threshold: 255 });
    assert.equal(large.shares.length, 255);
    const xs = new Set(large.shares.map((share) => share[share.length - 1]));
    assert.equal(xs.size, 255, "each share has its own x coordinate");
    assert.ok(!xs.has(0));
  });

  void test("stores only the sealed root key and the check value", async () => {
    const { root, store, shares } = await initializedRoot();

    // Rebuild the unseal key and root key outside the provider, from the documented format.
    const unsealKey = await recoverUnsealKey(shares.slice(0, 3));
    const rootKey = openStoredRootKey(store, unsealKey, 1);
    assert.equal(rootKey.length, 32);

    // Prove that the recovered key is the provider's root key: it opens the provider's wraps.
    await unsealWith(root, shares.slice(0, 3));
    const aad = new TextEncoder().encode("test/place");
    const blob = await root.wrap(new TextEncoder().encode("payload"), aad);
    const opened = aesGcmOpen(
      rootKey,
      blob.ciphertext,
      encodeLengthPrefixed("arbor/root-wrap/v1", 1, aad),
    );
    assert.equal(new TextDecoder().decode(opened), "payload");

    const stored = store.snapshot();
    const storedBytes = [stored.record!.checkValue, ...stored.versions.map((v) => v.sealedKey)];
    for (const bytes of storedBytes) {
      assert.ok(!containsBytes(bytes, rootKey), "the root key is not stored in plaintext");
      assert.ok(!containsBytes(bytes, unsealKey), "the unseal key is not stored");
      for (const share of shares) {
        assert.ok(!containsBytes(bytes, share.subarray(0, 32)), "no share is stored");
      }
    }

    const expectedCheck = hkdfSha256(
      unsealKey,
      new Uint8Array(0),
      encodeLengthPrefixed("arbor/sealed-root/check/v1"),
      32,
    );
    assert.deepEqual(stored.record!.checkValue, expectedCheck);
  });

  void test("zeroes the unseal key, root key and binary shares", async () => {
    const store = new MemorySealedRootStore();
    const root = await createSealedRoot({ store, clock: new FakeClock() });

    let shareTexts: string[] = [];
    const zeroed = await recordZeroedBuffers(async () => {
      shareTexts = (await root.initialize()).shares;
    });

    const shares = shareTexts.map(decodeUnsealShare);
    const unsealKey = await combine(shares.slice(0, 3));
    const rootKey = openStoredRootKey(store, unsealKey, 1);
    assert.ok(!isAllZero(unsealKey));
    assert.ok(includesBytes(zeroed, unsealKey), "the unseal key was zeroed");
    assert.ok(includesBytes(zeroed, rootKey), "the root key was zeroed");
    for (const share of shares) {
      assert.ok(includesBytes(zeroed, share), "each binary share was zeroed");
    }
  });

  void test("open rejects a malformed stored record", async () => {
    const { store } = await initializedRoot();
    const { record, versions } = store.snapshot();
    store.overwrite({ ...record!, checkValue: new Uint8Array(5) }, versions);

    await assertArborError(
      createSealedRoot({ store, clock: new FakeClock() }),
      "STORED_KEY_CORRUPT",
      /check value has 5 bytes, expected 32/,
    );
  });

  void test("open rejects a store without root version 1", async () => {
    const { store } = await initializedRoot();
    const { record, versions } = store.snapshot();
    store.overwrite(
      record!,
      versions.map((v) => ({ ...v, version: 2 })),
    );

    await assertArborError(
      createSealedRoot({ store, clock: new FakeClock() }),
      "STORED_KEY_CORRUPT",
      /root version 1 is missing/,
    );
  });
});
