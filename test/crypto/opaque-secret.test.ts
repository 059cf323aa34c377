import assert from "node:assert/strict";
import { test } from "node:test";

import { generateOpaqueSecret, parseOpaqueSecret, secretTypes } from "../../src/crypto/index.ts";
import type { ArborError } from "../../src/errors/index.ts";
import { expectArborError } from "./vectors.ts";

const OPERATOR_SECRET = /^arbor_op_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}$/;
const CLIENT_SECRET = /^arbor_cs_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}$/;
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
// "arbor_op_" is 9 characters, so the random part is [9, 52) and the checksum [53, 59).
const RANDOM_START = 9;
const RANDOM_END = 52;
const CHECKSUM_START = 53;

/** Parses `secret` as `type`, expects INVALID_SECRET and checks that the error hides the secret. */
function expectRejected(secret: string, type: "operator" | "client", context: string): ArborError {
  const error = expectArborError(() => parseOpaqueSecret(secret, type), "INVALID_SECRET", context);

  // Any 8 consecutive characters of the random part would be a leak; shorter inputs are garbage.
  const random = secret.slice(RANDOM_START, RANDOM_END);
  const exposed = [error.message, JSON.stringify(error.detail)];
  for (const text of exposed) {
    if (secret.length > 0)
      assert.ok(!text.includes(secret), `${context}: error contains the secret`);
    for (let start = 0; start + 8 <= random.length; start += 1) {
      const fragment = random.slice(start, start + 8);
      assert.ok(!text.includes(fragment), `${context}: error contains part of the random part`);
    }
  }
  return error;
}

/** Replaces the character at `position` with the next one in the base62 alphabet. */
function changeCharacter(secret: string, position: number): string {
  const next = BASE62[(BASE62.indexOf(secret[position]!) + 1) % BASE62.length]!;
  return secret.slice(0, position) + next + secret.slice(position + 1);
}

void test("opaque secret: format of each type", () => {
  assert.deepEqual(secretTypes, { operator: "op", client: "cs" });
  assert.match(generateOpaqueSecret("operator"), OPERATOR_SECRET);
  assert.match(generateOpaqueSecret("client"), CLIENT_SECRET);
});

void test("opaque secret: 1000 generated are distinct and parse", () => {
  const secrets = new Set<string>();
  for (let i = 0; i < 1000; i += 1) {
    const secret = generateOpaqueSecret("operator");
    assert.match(secret, OPERATOR_SECRET);
    assert.deepEqual(parseOpaqueSecret(secret, "operator"), { type: "operator" });
    secrets.add(secret);
  }
  assert.equal(secrets.size, 1000);
});

void test("opaque secret: any one-character change fails the checksum", () => {
  const secret = generateOpaqueSecret("operator");
  let rejected = 0;
  for (let position = RANDOM_START; position < secret.length; position += 1) {
    if (position === RANDOM_END) continue; // the "_" before the checksum
    const changed = changeCharacter(secret, position);
    const error = expectRejected(changed, "operator", `character ${position} changed`);
    assert.equal(
      error.message,
      "secret checksum does not match: the secret was mistyped or truncated",
      `character ${position} changed`,
    );
    rejected += 1;
  }
  assert.equal(rejected, 43 + 6);
  assert.equal(secret.length - CHECKSUM_START, 6);
});

void test("opaque secret: wrong type", () => {
  const client = generateOpaqueSecret("client");
  const error = expectRejected(client, "operator", "client secret as operator");
  assert.equal(error.message, 'wrong secret type "arbor_cs_": expected arbor_op_');

  const operator = generateOpaqueSecret("operator");
  assert.equal(
    expectRejected(operator, "client", "operator secret as client").message,
    'wrong secret type "arbor_op_": expected arbor_cs_',
  );
});

void test("opaque secret: truncated or extended", () => {
  const secret = generateOpaqueSecret("operator");
  const malformed = "malformed secret: expected the form arbor_op_<43 characters>_<6 characters>";
  const variants: Array<[string, string]> = [
    ["last character dropped", secret.slice(0, -1)],
    ["checksum dropped", secret.slice(0, RANDOM_END)],
    ["random character dropped", secret.slice(0, 20) + secret.slice(21)],
    ["extra character", `${secret}a`],
    ["trailing newline", `${secret}\n`],
    ["leading space", ` ${secret}`],
  ];
  for (const [name, variant] of variants) {
    assert.equal(expectRejected(variant, "operator", name).message, malformed, name);
  }
});

void test("opaque secret: garbage", () => {
  const malformed = "malformed secret: expected the form arbor_op_<43 characters>_<6 characters>";
  const secret = generateOpaqueSecret("operator");
  const variants: Array<[string, string]> = [
    ["empty", ""],
    ["word", "password"],
    ["upper-case prefix", secret.replace("arbor_op_", "ARBOR_OP_")],
    ["non-base62 character", secret.slice(0, 30) + "-" + secret.slice(31)],
    ["unknown type of the right shape", secret.replace("arbor_op_", "arbor_zz_")],
  ];
  for (const [name, variant] of variants) {
    const error = expectRejected(variant, "operator", name);
    if (name === "unknown type of the right shape") {
      assert.equal(error.message, 'wrong secret type "arbor_zz_": expected arbor_op_', name);
    } else {
      assert.equal(error.message, malformed, name);
    }
  }
});
