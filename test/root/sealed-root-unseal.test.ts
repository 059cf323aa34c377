import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { createSealedRoot } from "../../src/root/sealed-root.ts";
import {
  assertArborError,
  includesBytes,
  initializedRoot,
  openStoredRootKey,
  recordZeroedBuffers,
  recoverUnsealKey,
  tamperShare,
  unsealWith,
} from "./helpers.ts";
import { FakeClock } from "../helpers/clock.ts";

const encoder = new TextEncoder();

void describe("sealed root unseal ceremony", () => {
  void test("any 3 of 5 shares unseal", async () => {
    const { root, shares } = await initializedRoot();
    const aad = encoder.encode("combination-test");
    let blob: Awaited<ReturnType<typeof root.wrap>> | null = null;

    for (const combination of [
      [0, 1, 2],
      [2, 3, 4],
      [4, 0, 2],
      [1, 3, 4],
      [3, 1, 0],
    ]) {
      await unsealWith(
        root,
        combination.map((index) => shares[index]!),
      );
      assert.equal(root.status().state, "unsealed", `combination ${combination.join(",")}`);

      // Every combination reconstructs the same root: a blob from the first still unwraps.
      blob ??= await root.wrap(encoder.encode("same root"), aad);
      const plaintext = await root.unwrap(blob, aad);
      assert.equal(new TextDecoder().decode(plaintext), "same root");
      root.seal();
    }
  });

  void test("reports progress until the threshold", async () => {
    const { root, shares } = await initializedRoot();
    const ceremony = root.beginUnseal();
    assert.deepEqual(ceremony, { nonce: ceremony.nonce, threshold: 3, progress: 0 });
    assert.match(ceremony.nonce, /^[A-Za-z0-9_-]{22,}$/);

    const first = await root.submit(ceremony.nonce, shares[0]!);
    assert.deepEqual(first, { nonce: ceremony.nonce, threshold: 3, progress: 1, unsealed: false });
    const second = await root.submit(ceremony.nonce, shares[1]!);
    assert.deepEqual(second, { nonce: ceremony.nonce, threshold: 3, progress: 2, unsealed: false });

    assert.equal(root.status().state, "sealed");
    assert.deepEqual(root.status().ceremony, { nonce: ceremony.nonce, progress: 2, threshold: 3 });
    await assertArborError(root.wrap(new Uint8Array(32), new Uint8Array()), "SEALED");

    const third = await root.submit(ceremony.nonce, shares[2]!);
    assert.deepEqual(third, { nonce: ceremony.nonce, threshold: 3, progress: 3, unsealed: true });
    assert.equal(root.status().state, "unsealed");
    assert.equal(root.status().ceremony, null, "the finished ceremony is gone");
  });

  void test("beginUnseal returns the ceremony in progress", async () => {
    const { root, shares } = await initializedRoot();
    const first = root.beginUnseal();
    await root.submit(first.nonce, shares[0]!);

    const again = root.beginUnseal();

    assert.equal(again.nonce, first.nonce);
    assert.equal(again.progress, 1);
  });

  void test("each new ceremony has a fresh nonce", async () => {
    const { root } = await initializedRoot();
    const nonces = new Set<string>();
    for (let i = 0; i < 20; i += 1) {
      nonces.add(root.beginUnseal().nonce);
      root.cancelUnseal();
    }
    assert.equal(nonces.size, 20);
  });

  void test("submit without a ceremony is CEREMONY_NOT_FOUND", async () => {
    const { root, shares } = await initializedRoot();

    await assertArborError(
      root.submit("no-such-ceremony", shares[0]!),
      "CEREMONY_NOT_FOUND",
      /beginUnseal/,
    );
  });

  void test("another ceremony's nonce is CEREMONY_NONCE_MISMATCH", async () => {
    const { root, shares } = await initializedRoot();
    const old = root.beginUnseal();
    root.cancelUnseal();
    const current = root.beginUnseal();
    await root.submit(current.nonce, shares[0]!);

    await assertArborError(
      root.submit(old.nonce, shares[1]!),
      "CEREMONY_NONCE_MISMATCH",
      /does not match the unseal ceremony in progress/,
    );

    assert.deepEqual(root.status().ceremony, { nonce: current.nonce, progress: 1, threshold: 3 });
    // The share rejected with the wrong nonce can still be submitted under the right one.
    const progress = await root.submit(current.nonce, shares[1]!);
    assert.equal(progress.progress, 2);
  });

  void test("a nonce from another node is CEREMONY_NONCE_MISMATCH", async () => {
    const { root, store, clock, shares } = await initializedRoot();
    const otherNode = await createSealedRoot({ store, clock });
    const mine = root.beginUnseal();
    const theirs = otherNode.beginUnseal();

    await assertArborError(root.submit(theirs.nonce, shares[0]!), "CEREMONY_NONCE_MISMATCH");
    assert.equal(root.status().ceremony?.progress, 0);
    assert.notEqual(mine.nonce, theirs.nonce);
  });

  void test("submit after unseal is ALREADY_UNSEALED", async () => {
    const { root, shares } = await initializedRoot();
    const { nonce } = root.beginUnseal();
    for (const share of shares.slice(0, 3)) await root.submit(nonce, share);

    await assertArborError(root.submit(nonce, shares[3]!), "ALREADY_UNSEALED");
    await assertArborError(() => root.beginUnseal(), "ALREADY_UNSEALED");
  });

  void test("too few shares leave the root sealed", async () => {
    const { root, shares } = await initializedRoot({ shares: 5, threshold: 4 });
    const { nonce } = root.beginUnseal();

    for (const share of shares.slice(0, 3)) {
      const progress = await root.submit(nonce, share);
      assert.equal(progress.unsealed, false);
    }

    assert.equal(root.status().state, "sealed");
    assert.equal(root.status().ceremony?.progress, 3);
    await assertArborError(root.rotate(), "SEALED");
  });

  void test("tampered share is UNSEAL_FAILED and resets the ceremony", async () => {
    const { root, shares } = await initializedRoot();
    const { nonce } = root.beginUnseal();
    await root.submit(nonce, shares[0]!);
    await root.submit(nonce, tamperShare(shares[1]!));

    await assertArborError(
      root.submit(nonce, shares[2]!),
      "UNSEAL_FAILED",
      /do not reproduce the unseal key/,
    );

    assert.equal(root.status().state, "sealed");
    assert.equal(root.status().ceremony, null, "the ceremony was discarded");
    await assertArborError(root.submit(nonce, shares[3]!), "CEREMONY_NOT_FOUND");

    // Good shares still unseal in a new ceremony.
    await unsealWith(root, shares.slice(2, 5));
    assert.equal(root.status().state, "unsealed");
  });

  void test("shares of another deployment are UNSEAL_FAILED", async () => {
    const { root } = await initializedRoot();
    const other = await initializedRoot();
    const { nonce } = root.beginUnseal();
    await root.submit(nonce, other.shares[0]!);
    await root.submit(nonce, other.shares[1]!);

    await assertArborError(root.submit(nonce, other.shares[2]!), "UNSEAL_FAILED");
    assert.equal(root.status().state, "sealed");
  });

  void test("share with x = 0 is INVALID_SHARE", async () => {
    const { root, shares } = await initializedRoot();
    const { nonce } = root.beginUnseal();
    const zeroX = Uint8Array.from(shares[0]!);
    zeroX[zeroX.length - 1] = 0;

    const error = await assertArborError(
      root.submit(nonce, zeroX),
      "INVALID_SHARE",
      /x coordinate is 0/,
    );
    assert.equal(error.detail.parameter, "share");
    assert.equal(root.status().ceremony?.progress, 0, "the ceremony is unchanged");
  });

  void test("duplicate x coordinate is INVALID_SHARE", async () => {
    const { root, shares } = await initializedRoot();
    const { nonce } = root.beginUnseal();
    await root.submit(nonce, shares[0]!);
    const x = shares[0]![32]!;

    await assertArborError(
      root.submit(nonce, shares[0]!),
      "INVALID_SHARE",
      new RegExp(`x coordinate ${x} was already submitted`),
    );
    // A different share carrying the same x coordinate is rejected before combining as well.
    await assertArborError(root.submit(nonce, tamperShare(shares[0]!)), "INVALID_SHARE");

    assert.equal(root.status().ceremony?.progress, 1);
    await root.submit(nonce, shares[1]!);
    const done = await root.submit(nonce, shares[2]!);
    assert.equal(done.unsealed, true, "the earlier share was kept");
  });

  for (const length of [0, 1, 32, 34, 64]) {
    void test(`share of ${length} bytes is INVALID_SHARE`, async () => {
      const { root, shares } = await initializedRoot();
      const { nonce } = root.beginUnseal();
      const share = new Uint8Array(length).fill(7);
      if (length > 0) share.set(shares[0]!.subarray(0, Math.min(length, 33)));

      await assertArborError(
        root.submit(nonce, share),
        "INVALID_SHARE",
        new RegExp(`expected 33 bytes, got ${length}`),
      );
      assert.equal(root.status().ceremony?.progress, 0);
    });
  }

  void test("submit copies the share and leaves the caller's buffer alone", async () => {
    const { root, shares } = await initializedRoot();
    const { nonce } = root.beginUnseal();
    const mine = Uint8Array.from(shares[0]!);

    await root.submit(nonce, mine);
    mine.fill(0);
    await root.submit(nonce, shares[1]!);
    const done = await root.submit(nonce, shares[2]!);

    assert.equal(done.unsealed, true, "zeroing the caller's copy did not affect the ceremony");
  });

  void test("combining zeroes the submitted shares and the failed key", async () => {
    const { root, shares } = await initializedRoot();
    const { nonce } = root.beginUnseal();
    await root.submit(nonce, shares[0]!);
    await root.submit(nonce, shares[1]!);

    const zeroed = await recordZeroedBuffers(() => root.submit(nonce, shares[2]!));

    for (const share of shares.slice(0, 3)) {
      assert.ok(includesBytes(zeroed, share), "each submitted share copy was zeroed");
    }
  });

  void test("cancelUnseal zeroes pending shares", async () => {
    const { root, shares } = await initializedRoot();
    const { nonce } = root.beginUnseal();
    await root.submit(nonce, shares[0]!);
    await root.submit(nonce, shares[1]!);

    const zeroed = await recordZeroedBuffers(() => root.cancelUnseal());

    assert.ok(includesBytes(zeroed, shares[0]!));
    assert.ok(includesBytes(zeroed, shares[1]!));
    assert.equal(root.status().ceremony, null);
    await assertArborError(root.submit(nonce, shares[2]!), "CEREMONY_NOT_FOUND");
  });

  void test("unfinished ceremony expires after the timeout", async () => {
    const { root, clock, shares } = await initializedRoot({ ceremonyTimeoutMs: 60_000 });
    const { nonce } = root.beginUnseal();
    await root.submit(nonce, shares[0]!);

    clock.advance(59_999);
    assert.equal(root.status().ceremony?.progress, 1, "still open just before the timeout");
    await root.submit(nonce, shares[1]!);

    clock.advance(60_000);
    assert.equal(root.status().ceremony, null);
    await assertArborError(root.submit(nonce, shares[2]!), "CEREMONY_NOT_FOUND");
  });

  void test("concurrent submissions complete the ceremony once", async () => {
    const { root, shares } = await initializedRoot();
    const { nonce } = root.beginUnseal();
    await root.submit(nonce, shares[0]!);

    const results = await Promise.allSettled([
      root.submit(nonce, shares[1]!),
      root.submit(nonce, shares[2]!),
      root.submit(nonce, shares[3]!),
    ]);

    assert.equal(results[0]?.status, "fulfilled");
    assert.equal(results[1]?.status, "fulfilled");
    const third = results[2];
    assert.ok(third?.status === "rejected");
    assert.equal(third.reason.code, "ALREADY_UNSEALED");
    assert.equal(root.status().state, "unsealed");
  });

  void test("seal during combining abandons the unseal", async () => {
    const { root, store, shares } = await initializedRoot();
    const { nonce } = root.beginUnseal();
    await root.submit(nonce, shares[0]!);
    await root.submit(nonce, shares[1]!);
    const pause = store.pauseNextLoad();

    const completing = root.submit(nonce, shares[2]!);
    await pause.started;
    root.seal();
    pause.resume();

    await assertArborError(
      completing,
      "CEREMONY_NOT_FOUND",
      /sealed while the shares were combined/,
    );
    assert.equal(root.status().state, "sealed");
  });

  void test("a corrupt sealed key is STORED_KEY_CORRUPT, not a share failure", async () => {
    const { store, shares } = await initializedRoot({
      unsealRateLimit: { maxFailures: 1 },
    });
    const { record, versions } = store.snapshot();
    const damaged = versions.map((v) => {
      const sealedKey = Uint8Array.from(v.sealedKey);
      sealedKey[20] = (sealedKey[20] ?? 0) ^ 0xff;
      return { ...v, sealedKey };
    });
    store.overwrite(record!, damaged);
    const root = await createSealedRoot({
      store,
      clock: new FakeClock(),
      unsealRateLimit: { maxFailures: 1 },
    });

    const { nonce } = root.beginUnseal();
    await root.submit(nonce, shares[0]!);
    await root.submit(nonce, shares[1]!);
    await assertArborError(
      root.submit(nonce, shares[2]!),
      "STORED_KEY_CORRUPT",
      /sealed root version 1 does not open/,
    );

    assert.equal(root.status().state, "sealed");
    // With maxFailures 1, a counted failure would make the next submission RATE_LIMITED.
    const next = root.beginUnseal();
    await root.submit(next.nonce, shares[0]!);
  });

  void test("status after reopening the store is sealed", async () => {
    const { store, clock, shares } = await initializedRoot();

    const reopened = await createSealedRoot({ store, clock });

    assert.equal(reopened.status().state, "sealed");
    assert.equal(reopened.status().rootVersion, 1);
    await unsealWith(reopened, shares.slice(1, 4));
    assert.equal(reopened.status().state, "unsealed");
  });

  void test("unseal opens the root key recorded in the store", async () => {
    const { root, store, shares } = await initializedRoot();
    await unsealWith(root, shares.slice(0, 3));

    const zeroed = await recordZeroedBuffers(() => root.seal());

    const unsealKey = await recoverUnsealKey(shares.slice(0, 3));
    const rootKey = openStoredRootKey(store, unsealKey, 1);
    assert.ok(includesBytes(zeroed, rootKey), "seal zeroed root version 1's key");
    assert.ok(includesBytes(zeroed, unsealKey), "seal zeroed the unseal key");
  });
});

void describe("sealed root unseal rate limit", () => {
  const limits = { maxFailures: 3, windowMs: 600_000, backoffMs: 60_000, maxBackoffMs: 240_000 };

  void test("locks after repeated invalid shares and releases after the backoff", async () => {
    const { root, clock, shares } = await initializedRoot({ unsealRateLimit: limits });
    const { nonce } = root.beginUnseal();
    const short = new Uint8Array(10);

    for (let i = 0; i < 3; i += 1) {
      await assertArborError(root.submit(nonce, short), "INVALID_SHARE");
    }

    await assertArborError(root.submit(nonce, shares[0]!), "RATE_LIMITED", /retry in 60 seconds/);
    assert.equal(root.status().ceremony?.progress, 0, "a rate-limited share is not accepted");

    clock.advance(59_999);
    await assertArborError(root.submit(nonce, shares[0]!), "RATE_LIMITED", /retry in 1 seconds/);

    clock.advance(1);
    const progress = await root.submit(nonce, shares[0]!);
    assert.equal(progress.progress, 1);
  });

  void test("failed combines count and the backoff doubles", async () => {
    const { root, clock, shares } = await initializedRoot({ unsealRateLimit: limits });
    const failOnce = async (): Promise<void> => {
      const { nonce } = root.beginUnseal();
      await root.submit(nonce, shares[0]!);
      await root.submit(nonce, shares[1]!);
      await assertArborError(root.submit(nonce, tamperShare(shares[2]!)), "UNSEAL_FAILED");
    };

    for (let i = 0; i < 3; i += 1) await failOnce();
    await assertArborError(
      root.submit(root.beginUnseal().nonce, shares[0]!),
      "RATE_LIMITED",
      /retry in 60 seconds/,
    );

    clock.advance(60_000);
    for (let i = 0; i < 3; i += 1) await failOnce();
    await assertArborError(
      root.submit(root.beginUnseal().nonce, shares[0]!),
      "RATE_LIMITED",
      /retry in 120 seconds/,
    );

    clock.advance(120_000);
    for (let i = 0; i < 3; i += 1) await failOnce();
    clock.advance(240_000);
    for (let i = 0; i < 3; i += 1) await failOnce();
    // The fourth backoff in a row would be 480 seconds, and maxBackoffMs caps it at 240.
    await assertArborError(
      root.submit(root.beginUnseal().nonce, shares[0]!),
      "RATE_LIMITED",
      /retry in 240 seconds/,
    );

    clock.advance(240_000);
    root.cancelUnseal();
    await unsealWith(root, shares.slice(0, 3));
    assert.equal(root.status().state, "unsealed");
  });

  void test("failures outside the window do not add up", async () => {
    const { root, clock, shares } = await initializedRoot({ unsealRateLimit: limits });
    const { nonce } = root.beginUnseal();
    const short = new Uint8Array(10);

    await assertArborError(root.submit(nonce, short), "INVALID_SHARE");
    await assertArborError(root.submit(nonce, short), "INVALID_SHARE");
    clock.advance(600_000);
    await assertArborError(root.submit(nonce, short), "INVALID_SHARE");

    const progress = await root.submit(nonce, shares[0]!);
    assert.equal(progress.progress, 1, "two failures in the window do not lock");
  });

  void test("success clears earlier failures", async () => {
    const { root, shares } = await initializedRoot({ unsealRateLimit: limits });
    const short = new Uint8Array(10);
    let { nonce } = root.beginUnseal();
    await assertArborError(root.submit(nonce, short), "INVALID_SHARE");
    await assertArborError(root.submit(nonce, short), "INVALID_SHARE");
    for (const share of shares.slice(0, 3)) await root.submit(nonce, share);
    root.seal();

    ({ nonce } = root.beginUnseal());
    await assertArborError(root.submit(nonce, short), "INVALID_SHARE");
    await assertArborError(root.submit(nonce, short), "INVALID_SHARE");
    const progress = await root.submit(nonce, shares[0]!);
    assert.equal(progress.progress, 1);
  });

  void test("nonce mismatches do not count as failures", async () => {
    const { root, shares } = await initializedRoot({ unsealRateLimit: limits });
    const { nonce } = root.beginUnseal();
    for (let i = 0; i < 5; i += 1) {
      await assertArborError(root.submit("stale", shares[0]!), "CEREMONY_NONCE_MISMATCH");
    }
    const progress = await root.submit(nonce, shares[0]!);
    assert.equal(progress.progress, 1);
  });

  void test("rejects invalid limits", async () => {
    await assertArborError(
      initializedRoot({ unsealRateLimit: { maxFailures: 0 } }),
      "INVALID_ARGUMENT",
      /^invalid unsealRateLimit.maxFailures 0: must be a positive integer/,
    );
    await assertArborError(
      initializedRoot({ unsealRateLimit: { backoffMs: 10_000, maxBackoffMs: 5_000 } }),
      "INVALID_ARGUMENT",
      /maxBackoffMs 5000: must be at least backoffMs \(10000\)/,
    );
  });
});
