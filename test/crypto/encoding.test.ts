import assert from "node:assert/strict";
import { test } from "node:test";

import { encodeLengthPrefixed } from "../../src/crypto/index.ts";
import { expectArborError, hex, toHex } from "./vectors.ts";

void test("encodeLengthPrefixed: exact bytes of a field list", () => {
  const encoded = encodeLengthPrefixed(
    "ab",
    1,
    Uint8Array.of(0xff, 0x00),
    "",
    0x0102030405060708n,
    "é",
  );

  const expected = [
    "00000002 6162", // "ab"
    "00000008 0000000000000001", // 1 as 8-byte big-endian
    "00000002 ff00", // bytes as they are
    "00000000", // empty string
    "00000008 0102030405060708", // bigint
    "00000002 c3a9", // "é" in UTF-8
  ].join(" ");
  assert.equal(toHex(encoded), toHex(hex(expected)));
});

void test("encodeLengthPrefixed: no fields", () => {
  assert.equal(encodeLengthPrefixed().length, 0);
});

void test("encodeLengthPrefixed: separators cannot collide", () => {
  const lists: Array<[string, string[]]> = [
    ["a|b, c", ["a|b", "c"]],
    ["a, b|c", ["a", "b|c"]],
    ["ab, c", ["ab", "c"]],
    ["a, bc", ["a", "bc"]],
    ["abc", ["abc"]],
    ["a, b, c", ["a", "b", "c"]],
    ["a|b|c", ["a|b|c"]],
  ];
  const seen = new Map<string, string>();
  for (const [name, fields] of lists) {
    const encoded = toHex(encodeLengthPrefixed(...fields));
    assert.equal(seen.get(encoded), undefined, `${name} encodes like ${seen.get(encoded)}`);
    seen.set(encoded, name);
  }
  assert.equal(seen.size, lists.length);
});

void test("encodeLengthPrefixed: integer and string fields differ", () => {
  // The string "1" and the integer 1 have different lengths and bytes.
  assert.notEqual(toHex(encodeLengthPrefixed("1")), toHex(encodeLengthPrefixed(1)));
  assert.equal(toHex(encodeLengthPrefixed(7)), toHex(encodeLengthPrefixed(7n)));
});

void test("encodeLengthPrefixed: integers are 8-byte big-endian", () => {
  const cases: Array<[number | bigint, string]> = [
    [0, "0000000000000000"],
    [255, "00000000000000ff"],
    [256, "0000000000000100"],
    [Number.MAX_SAFE_INTEGER, "001fffffffffffff"],
    [2n ** 64n - 1n, "ffffffffffffffff"],
  ];
  for (const [value, bytes] of cases) {
    assert.equal(toHex(encodeLengthPrefixed(value)), `00000008${bytes}`, String(value));
  }
});

void test("encodeLengthPrefixed: byte array views encode only their range", () => {
  const backing = Uint8Array.of(1, 2, 3, 4, 5);
  assert.equal(toHex(encodeLengthPrefixed(backing.subarray(1, 3))), "000000020203");
});

void test("encodeLengthPrefixed: rejects negative and unsafe numbers", () => {
  const cases: Array<[number | bigint, string]> = [
    [-1, 'invalid fields[1] "-1": an integer field must be 0 to 2^64 - 1'],
    [1.5, 'invalid fields[1] "1.5": an integer field must be a safe integer'],
    [Number.NaN, 'invalid fields[1] "NaN": an integer field must be a safe integer'],
    [
      Number.POSITIVE_INFINITY,
      'invalid fields[1] "Infinity": an integer field must be a safe integer',
    ],
    [2 ** 53, 'invalid fields[1] "9007199254740992": an integer field must be a safe integer'],
    [-1n, 'invalid fields[1] "-1": an integer field must be 0 to 2^64 - 1'],
    [2n ** 64n, 'invalid fields[1] "18446744073709551616": an integer field must be 0 to 2^64 - 1'],
  ];
  for (const [value, message] of cases) {
    const error = expectArborError(
      () => encodeLengthPrefixed("prefix", value),
      "INVALID_ARGUMENT",
      String(value),
    );
    assert.equal(error.message, message, String(value));
  }
});
