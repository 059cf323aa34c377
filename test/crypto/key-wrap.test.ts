import assert from "node:assert/strict";
import { test } from "node:test";

import { aesKeyUnwrapPad, aesKeyWrapPad, randomBytes } from "../../src/crypto/index.ts";
import { DECRYPTION_FAILED_MESSAGE } from "../../src/errors/index.ts";
import {
  casesOf,
  describeCase,
  expectArborError,
  hex,
  loadWycheproof,
  toHex,
  withFlippedBit,
  type WycheproofCase,
} from "./vectors.ts";

interface KeywrapCase extends WycheproofCase {
  key: string;
  msg: string;
  ct: string;
}

interface KeywrapGroup {
  keySize: number;
  tests: KeywrapCase[];
}

const KEK_SIZES = new Set([16, 24, 32]);

const file = loadWycheproof<KeywrapGroup>("aes_kwp_test");
const all = casesOf(file);
const valid = all.filter((c) => c.test.result === "valid");
const invalid = all.filter((c) => c.test.result === "invalid");
// Wycheproof's AES-KWP file (testvectors_v1) has 77 valid and 177 invalid cases and no acceptable
// ones. Should an update add some, this test fails so that someone decides how to treat them.
const acceptable = all.filter((c) => c.test.result === "acceptable");

void test("AES-KWP Wycheproof: every case is classified", () => {
  assert.equal(all.length, 254);
  assert.equal(acceptable.length, 0, "acceptable cases need an explicit decision");
});

void test(`AES-KWP Wycheproof: ${valid.length} valid cases unwrap and wrap`, () => {
  assert.ok(valid.length >= 77, `only ${valid.length} valid cases ran`);

  for (const { test: vector } of valid) {
    const context = describeCase(vector);
    const kek = hex(vector.key);

    assert.equal(toHex(aesKeyUnwrapPad(kek, hex(vector.ct))), vector.msg, `${context}: unwrap`);
    assert.equal(toHex(aesKeyWrapPad(kek, hex(vector.msg))), vector.ct, `${context}: wrap`);
  }
});

void test(`AES-KWP Wycheproof: ${invalid.length} invalid cases are rejected`, () => {
  assert.ok(invalid.length >= 177, `only ${invalid.length} invalid cases ran`);

  for (const { test: vector } of invalid) {
    const context = describeCase(vector);
    const kek = hex(vector.key);
    const expected = KEK_SIZES.has(kek.length) ? "DECRYPTION_FAILED" : "INVALID_ARGUMENT";

    const error = expectArborError(() => aesKeyUnwrapPad(kek, hex(vector.ct)), expected, context);
    if (expected === "DECRYPTION_FAILED") {
      assert.equal(error.message, DECRYPTION_FAILED_MESSAGE, `${context}: message`);
    }
  }
});

// RFC 5649 section 6, typed in from the RFC: both examples use this 192-bit KEK.
const RFC5649_KEK = hex("5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8");
const RFC5649_EXAMPLES = [
  {
    name: "20 octets of key data",
    keyData: "c37b7e6492584340 bed1220780894115 5068f738",
    wrapped: "138bdeaa9b8fa7fc 61f97742e72248ee 5ae6ae5360d1ae6a 5f54f373fa543b6a",
  },
  {
    name: "7 octets of key data",
    keyData: "466f7250617369",
    wrapped: "afbeb0f07dfbf541 9200f2ccb50bb24f",
  },
];

for (const example of RFC5649_EXAMPLES) {
  void test(`RFC 5649 example: ${example.name}`, () => {
    const keyData = hex(example.keyData);
    const wrapped = hex(example.wrapped);

    assert.deepEqual(aesKeyWrapPad(RFC5649_KEK, keyData), wrapped);
    assert.deepEqual(aesKeyUnwrapPad(RFC5649_KEK, wrapped), keyData);
  });
}

void test("AES-KWP: wrong KEK fails uniformly", () => {
  const wrapped = hex(RFC5649_EXAMPLES[0]!.wrapped);
  const otherKek = withFlippedBit(RFC5649_KEK, 0);

  const error = expectArborError(
    () => aesKeyUnwrapPad(otherKek, wrapped),
    "DECRYPTION_FAILED",
    "other KEK",
  );
  assert.equal(error.message, DECRYPTION_FAILED_MESSAGE);
});

void test("AES-KWP: malformed wrapped lengths fail uniformly", () => {
  const kek = randomBytes(32);
  const wrapped = aesKeyWrapPad(kek, randomBytes(32));

  const attempts: Array<[string, Uint8Array]> = [
    ["empty", new Uint8Array(0)],
    ["one semiblock", wrapped.subarray(0, 8)],
    ["not a multiple of 8 bytes", wrapped.subarray(0, wrapped.length - 1)],
    ["one semiblock removed", wrapped.subarray(0, wrapped.length - 8)],
  ];
  for (const [name, blob] of attempts) {
    const error = expectArborError(() => aesKeyUnwrapPad(kek, blob), "DECRYPTION_FAILED", name);
    assert.equal(error.message, DECRYPTION_FAILED_MESSAGE, name);
  }
});

void test("AES-KWP: KEK sizes other than 128, 192, 256 bits", () => {
  const kek = randomBytes(20);
  const message = 'invalid kek "20 bytes": a key-encryption key must be 16, 24 or 32 bytes';

  const wrapError = expectArborError(
    () => aesKeyWrapPad(kek, randomBytes(16)),
    "INVALID_ARGUMENT",
    "wrap",
  );
  assert.equal(wrapError.message, message);

  const unwrapError = expectArborError(
    () => aesKeyUnwrapPad(kek, randomBytes(24)),
    "INVALID_ARGUMENT",
    "unwrap",
  );
  assert.equal(unwrapError.message, message);
});

void test("AES-KWP: empty key data is rejected", () => {
  const error = expectArborError(
    () => aesKeyWrapPad(randomBytes(32), new Uint8Array(0)),
    "INVALID_ARGUMENT",
    "wrap of nothing",
  );
  assert.equal(error.message, 'invalid keyData "0 bytes": nothing to wrap');
});

void test("AES-KWP: round trip for 1 to 64 bytes", () => {
  const kek = randomBytes(32);
  for (let length = 1; length <= 64; length += 1) {
    const keyData = randomBytes(length);
    const wrapped = aesKeyWrapPad(kek, keyData);

    assert.equal(wrapped.length, 8 + Math.ceil(length / 8) * 8, `length ${length}`);
    assert.deepEqual(aesKeyUnwrapPad(kek, wrapped), keyData, `length ${length}`);
  }
});
