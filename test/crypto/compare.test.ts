import assert from "node:assert/strict";
import { test } from "node:test";

import { constantTimeEqual, randomBytes } from "../../src/crypto/index.ts";
import { withFlippedBit } from "./vectors.ts";

void test("constantTimeEqual: equal contents", () => {
  const a = randomBytes(32);
  assert.equal(constantTimeEqual(a, a.slice()), true);
});

void test("constantTimeEqual: one differing byte anywhere", () => {
  const a = randomBytes(32);
  for (const position of [0, 15, 31]) {
    const b = withFlippedBit(a, position, 0x80);
    assert.equal(constantTimeEqual(a, b), false, `byte ${position}`);
  }
});

void test("constantTimeEqual: different lengths", () => {
  const a = randomBytes(32);
  assert.equal(constantTimeEqual(a, a.subarray(0, 31)), false, "prefix");
  assert.equal(constantTimeEqual(a, Uint8Array.of(...a, 0)), false, "extended by a zero byte");
  assert.equal(constantTimeEqual(new Uint8Array(0), a), false, "empty against non-empty");
});

void test("constantTimeEqual: empty inputs", () => {
  assert.equal(constantTimeEqual(new Uint8Array(0), new Uint8Array(0)), true);
});

void test("constantTimeEqual: views compare by content", () => {
  const backing = Uint8Array.of(9, 1, 2, 3, 9);
  assert.equal(constantTimeEqual(backing.subarray(1, 4), Uint8Array.of(1, 2, 3)), true);
});
