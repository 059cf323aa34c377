import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { test } from "node:test";

import { HKDF_SHA256_MAX_OUTPUT, hkdfSha256, randomBytes } from "../../src/crypto/index.ts";
import {
  casesOf,
  describeCase,
  expectArborError,
  hex,
  loadWycheproof,
  toHex,
  type WycheproofCase,
} from "./vectors.ts";

interface HkdfCase extends WycheproofCase {
  ikm: string;
  salt: string;
  info: string;
  size: number;
  okm: string;
}

interface HkdfGroup {
  keySize: number;
  tests: HkdfCase[];
}

function range(first: number, last: number): Uint8Array {
  return Uint8Array.from({ length: last - first + 1 }, (_, index) => first + index);
}

// RFC 5869 Appendix A, test cases 1 to 3 (the SHA-256 ones), typed in from the RFC.
const RFC5869_CASES = [
  {
    name: "A.1 basic",
    ikm: new Uint8Array(22).fill(0x0b),
    salt: range(0x00, 0x0c),
    info: range(0xf0, 0xf9),
    length: 42,
    prk: "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
    okm:
      "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf" + "34007208d5b887185865",
  },
  {
    name: "A.2 longer inputs and outputs",
    ikm: range(0x00, 0x4f),
    salt: range(0x60, 0xaf),
    info: range(0xb0, 0xff),
    length: 82,
    prk: "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
    okm:
      "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c" +
      "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71" +
      "cc30c58179ec3e87c14c01d5c1f3434f1d87",
  },
  {
    name: "A.3 empty salt and info",
    ikm: new Uint8Array(22).fill(0x0b),
    salt: new Uint8Array(0),
    info: new Uint8Array(0),
    length: 42,
    prk: "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
    okm:
      "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d" + "9d201395faa4b61a96c8",
  },
];

/**
 * HKDF written out from RFC 5869 section 2 with HMAC-SHA256, as an oracle for inputs that no
 * published vector covers. An empty salt is HashLen zero bytes (section 2.2).
 */
function referenceHkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number) {
  const prk = createHmac("sha256", salt.length > 0 ? salt : new Uint8Array(32))
    .update(ikm)
    .digest();
  const blocks: Buffer[] = [];
  let previous = Buffer.alloc(0);
  for (let counter = 1; blocks.length * 32 < length; counter += 1) {
    previous = createHmac("sha256", prk)
      .update(previous)
      .update(info)
      .update(Uint8Array.of(counter))
      .digest();
    blocks.push(previous);
  }
  return { prk: toHex(prk), okm: toHex(Buffer.concat(blocks).subarray(0, length)) };
}

for (const rfcCase of RFC5869_CASES) {
  void test(`RFC 5869 ${rfcCase.name}`, () => {
    const okm = hkdfSha256(rfcCase.ikm, rfcCase.salt, rfcCase.info, rfcCase.length);
    assert.equal(toHex(okm), rfcCase.okm);

    // The oracle used below must reproduce the RFC, intermediate PRK included.
    assert.deepEqual(referenceHkdf(rfcCase.ikm, rfcCase.salt, rfcCase.info, rfcCase.length), {
      prk: rfcCase.prk,
      okm: rfcCase.okm,
    });
  });
}

const file = loadWycheproof<HkdfGroup>("hkdf_sha256_test");
const all = casesOf(file);
const valid = all.filter((c) => c.test.result === "valid");
const invalid = all.filter((c) => c.test.result === "invalid");
// The copied file (testvectors_v1) has no acceptable cases; a future one needs a decision first.
const acceptable = all.filter((c) => c.test.result === "acceptable");

void test("HKDF Wycheproof: every case is classified", () => {
  assert.equal(all.length, 86);
  assert.equal(acceptable.length, 0, "acceptable cases need an explicit decision");
});

void test(`HKDF Wycheproof: ${valid.length} valid cases derive okm`, () => {
  assert.ok(valid.length >= 83, `only ${valid.length} valid cases ran`);

  let emptySalt = 0;
  for (const { test: vector } of valid) {
    const okm = hkdfSha256(hex(vector.ikm), hex(vector.salt), hex(vector.info), vector.size);
    assert.equal(toHex(okm), vector.okm, describeCase(vector));
    if (vector.salt === "") emptySalt += 1;
  }
  assert.ok(emptySalt >= 20, `only ${emptySalt} cases had an empty salt`);
});

void test(`HKDF Wycheproof: ${invalid.length} invalid cases are INVALID_ARGUMENT`, () => {
  assert.ok(invalid.length >= 3, `only ${invalid.length} invalid cases ran`);

  for (const { test: vector } of invalid) {
    const context = describeCase(vector);
    const error = expectArborError(
      () => hkdfSha256(hex(vector.ikm), hex(vector.salt), hex(vector.info), vector.size),
      "INVALID_ARGUMENT",
      context,
    );
    // All three invalid cases ask for one byte more than 255 hash lengths.
    assert.equal(
      error.message,
      `invalid length ${vector.size}: HKDF-SHA256 output must be 1 to 8160 bytes`,
      context,
    );
  }
});

void test("HKDF: empty input keying material", () => {
  const salt = range(0x00, 0x1f);
  const info = range(0x40, 0x4f);

  const okm = hkdfSha256(new Uint8Array(0), salt, info, 64);
  assert.equal(toHex(okm), referenceHkdf(new Uint8Array(0), salt, info, 64).okm);

  const allEmpty = hkdfSha256(new Uint8Array(0), new Uint8Array(0), new Uint8Array(0), 32);
  assert.equal(
    toHex(allEmpty),
    referenceHkdf(new Uint8Array(0), new Uint8Array(0), new Uint8Array(0), 32).okm,
  );
});

void test("HKDF: info of exactly 1024 bytes", () => {
  const ikm = randomBytes(32);
  const salt = randomBytes(32);
  const info = randomBytes(1024);

  assert.equal(toHex(hkdfSha256(ikm, salt, info, 48)), referenceHkdf(ikm, salt, info, 48).okm);
});

void test("HKDF: info over 1024 bytes is INVALID_ARGUMENT", () => {
  const error = expectArborError(
    () => hkdfSha256(randomBytes(32), new Uint8Array(0), new Uint8Array(1025), 32),
    "INVALID_ARGUMENT",
    "1025-byte info",
  );
  assert.equal(error.message, 'invalid info "1025 bytes": HKDF info must be at most 1024 bytes');
});

void test("HKDF: output lengths outside 1 to 8160", () => {
  assert.equal(HKDF_SHA256_MAX_OUTPUT, 8160);
  const ikm = randomBytes(32);

  for (const length of [0, -1, 8161, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    const error = expectArborError(
      () => hkdfSha256(ikm, new Uint8Array(0), new Uint8Array(0), length),
      "INVALID_ARGUMENT",
      `length ${length}`,
    );
    assert.match(error.message, /^invalid length .*: HKDF-SHA256 output must be 1 to 8160 bytes$/);
  }
});
