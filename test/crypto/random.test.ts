import assert from "node:assert/strict";
import { test } from "node:test";

import {
  OPAQUE_ID_PATTERN,
  encodeBase32,
  newOpaqueId,
  randomBytes,
} from "../../src/crypto/index.ts";

const encoder = new TextEncoder();

void test("encodeBase32: RFC 4648 section 10 vectors", () => {
  // The RFC's base32 vectors, lower-cased and without the "=" padding.
  const vectors: Array<[string, string]> = [
    ["", ""],
    ["f", "my"],
    ["fo", "mzxq"],
    ["foo", "mzxw6"],
    ["foob", "mzxw6yq"],
    ["fooba", "mzxw6ytb"],
    ["foobar", "mzxw6ytboi"],
  ];
  for (const [input, expected] of vectors) {
    assert.equal(encodeBase32(encoder.encode(input)), expected, JSON.stringify(input));
  }
});

void test("encodeBase32: all-zero and all-one bytes", () => {
  assert.equal(encodeBase32(new Uint8Array(5)), "aaaaaaaa");
  assert.equal(encodeBase32(new Uint8Array(5).fill(0xff)), "77777777");
  assert.equal(encodeBase32(new Uint8Array(16).fill(0xff)), `${"7".repeat(25)}4`);
});

void test("newOpaqueId: key_ and 26 base32 characters", () => {
  const ids = new Set<string>();
  for (let i = 0; i < 1000; i += 1) {
    const id = newOpaqueId("key");
    assert.match(id, /^key_[a-z2-7]{26}$/);
    assert.match(id, OPAQUE_ID_PATTERN);
    // 128 bits fill 25 characters and 3 bits of the 26th, whose 2 low bits are zero.
    assert.match(id.at(-1)!, /^[aeimquy4]$/, id);
    ids.add(id);
  }
  assert.equal(ids.size, 1000);
});

void test("randomBytes: requested length, fresh values", () => {
  assert.equal(randomBytes(0).length, 0);
  assert.equal(randomBytes(32).length, 32);
  assert.notDeepEqual(randomBytes(32), randomBytes(32));
});
