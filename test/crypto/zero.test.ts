import assert from "node:assert/strict";
import { test } from "node:test";

import { randomBytes, withZeroed, zeroize } from "../../src/crypto/index.ts";

function isAllZero(bytes: Uint8Array): boolean {
  return bytes.every((byte) => byte === 0);
}

/** Random bytes with the first byte forced non-zero, so a test cannot pass on an all-zero draw. */
function secretBytes(length: number): Uint8Array {
  const bytes = randomBytes(length);
  bytes[0] = 0xa5;
  return bytes;
}

void test("zeroize: every buffer is zero", () => {
  const first = secretBytes(32);
  const second = secretBytes(64);

  zeroize(first, null, second, undefined);

  assert.ok(isAllZero(first));
  assert.ok(isAllZero(second));
});

void test("zeroize: a view zeroes only its range", () => {
  const backing = new Uint8Array(8).fill(0xff);
  zeroize(backing.subarray(2, 4));
  assert.deepEqual(backing, Uint8Array.of(0xff, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff));
});

void test("withZeroed: zeroes after the callback returns", async () => {
  const secret = secretBytes(32);
  const copy = secret.slice();

  const result = await withZeroed(secret, (bytes) => {
    assert.deepEqual(bytes, copy, "the callback sees the secret");
    return bytes.length;
  });

  assert.equal(result, 32);
  assert.ok(isAllZero(secret));
});

void test("withZeroed: zeroes after an async callback resolves", async () => {
  const secret = secretBytes(32);

  const result = await withZeroed(secret, async (bytes) => {
    await Promise.resolve();
    return bytes[0];
  });

  assert.equal(result, 0xa5);
  assert.ok(isAllZero(secret));
});

void test("withZeroed: zeroes when the callback throws", async () => {
  const secret = secretBytes(32);

  await assert.rejects(
    withZeroed(secret, () => {
      throw new Error("callback failed");
    }),
    { message: "callback failed" },
  );
  assert.ok(isAllZero(secret));
});

void test("withZeroed: zeroes when the callback rejects", async () => {
  const secret = secretBytes(32);

  await assert.rejects(
    withZeroed(secret, async () => {
      await Promise.resolve();
      throw new Error("callback rejected");
    }),
    { message: "callback rejected" },
  );
  assert.ok(isAllZero(secret));
});
