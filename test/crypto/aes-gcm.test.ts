import assert from "node:assert/strict";
import { test } from "node:test";

import {
  AES_256_KEY_BYTES,
  GCM_MAX_NONCE_BYTES,
  GCM_NONCE_BYTES,
  GCM_TAG_BYTES,
  aesGcmDecryptDetached,
  aesGcmEncryptDetached,
  aesGcmOpen,
  aesGcmSeal,
  randomBytes,
} from "../../src/crypto/index.ts";
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

interface AeadCase extends WycheproofCase {
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
}

interface AeadGroup {
  keySize: number;
  ivSize: number;
  tagSize: number;
  tests: AeadCase[];
}

// Arbor's size policy, stricter than GCM itself:
// - Tags are always 128 bits. A case with any other tag size must be rejected (DECRYPTION_FAILED)
//   even where Wycheproof marks it valid, because a short tag makes forgery far cheaper.
// - The detached functions take nonces of 1 to 128 bytes, the most that the OpenSSL 3 in Node 20
//   accepts. A case with a longer nonce must be rejected: DECRYPTION_FAILED when decrypting,
//   INVALID_ARGUMENT when encrypting.
// An `acceptable` case (legal but weak) gets no special treatment: within the size policy it must
// either decrypt to its `msg` or fail with DECRYPTION_FAILED, and never return other bytes.
const file = loadWycheproof<AeadGroup>("aes_gcm_test");
const all = casesOf(file);

function withinPolicy(group: AeadGroup, vector: AeadCase): boolean {
  const nonceBytes = vector.iv.length / 2;
  return (
    group.tagSize === GCM_TAG_BYTES * 8 && nonceBytes >= 1 && nonceBytes <= GCM_MAX_NONCE_BYTES
  );
}

const validInPolicy = all.filter((c) => c.test.result === "valid" && withinPolicy(c.group, c.test));
const outOfPolicy = all.filter((c) => !withinPolicy(c.group, c.test));
const invalidInPolicy = all.filter(
  (c) => c.test.result === "invalid" && withinPolicy(c.group, c.test),
);
const acceptable = all.filter((c) => c.test.result === "acceptable");

// Counts in the copied file (Wycheproof testvectors_v1): 316 cases, 229 valid and 87 invalid, all
// with 128-bit tags; 3 valid cases use a 257-byte nonce and 6 invalid ones an empty nonce.
void test("AES-GCM Wycheproof: every case is classified", () => {
  assert.equal(all.length, 316);
  assert.equal(validInPolicy.length + invalidInPolicy.length + outOfPolicy.length, all.length);
});

void test(`AES-GCM Wycheproof: ${validInPolicy.length} valid cases decrypt and encrypt`, () => {
  assert.ok(validInPolicy.length >= 226, `only ${validInPolicy.length} valid cases ran`);

  for (const { test: vector } of validInPolicy) {
    const context = describeCase(vector);
    const key = hex(vector.key);
    const nonce = hex(vector.iv);
    const aad = hex(vector.aad);

    const plaintext = aesGcmDecryptDetached(key, nonce, hex(vector.ct), hex(vector.tag), aad);
    assert.equal(toHex(plaintext), vector.msg, `${context}: decrypted plaintext`);

    const { ciphertext, tag } = aesGcmEncryptDetached(key, nonce, hex(vector.msg), aad);
    assert.equal(toHex(ciphertext), vector.ct, `${context}: ciphertext`);
    assert.equal(toHex(tag), vector.tag, `${context}: tag`);
  }
});

void test(`AES-GCM Wycheproof: ${invalidInPolicy.length} invalid cases are rejected`, () => {
  assert.ok(invalidInPolicy.length >= 81, `only ${invalidInPolicy.length} invalid cases ran`);

  for (const { test: vector } of invalidInPolicy) {
    const context = describeCase(vector);
    const error = expectArborError(
      () =>
        aesGcmDecryptDetached(
          hex(vector.key),
          hex(vector.iv),
          hex(vector.ct),
          hex(vector.tag),
          hex(vector.aad),
        ),
      "DECRYPTION_FAILED",
      context,
    );
    assert.equal(error.message, DECRYPTION_FAILED_MESSAGE, `${context}: message`);
  }
});

void test(`AES-GCM Wycheproof: ${outOfPolicy.length} out-of-policy cases rejected`, () => {
  // The 257-byte nonces (3 valid cases) and the empty nonces (6 invalid cases).
  assert.ok(outOfPolicy.length >= 9, `only ${outOfPolicy.length} out-of-policy cases ran`);

  for (const { group, test: vector } of outOfPolicy) {
    const sizes = `tag ${group.tagSize} bits, nonce ${vector.iv.length / 2} bytes`;
    const context = `${describeCase(vector)} (${sizes})`;
    const key = hex(vector.key);
    const nonce = hex(vector.iv);
    const aad = hex(vector.aad);

    expectArborError(
      () => aesGcmDecryptDetached(key, nonce, hex(vector.ct), hex(vector.tag), aad),
      "DECRYPTION_FAILED",
      `${context}: decrypt`,
    );
    if (group.tagSize === GCM_TAG_BYTES * 8) {
      // The nonce is what breaks the policy, so encryption must reject it as well.
      const error = expectArborError(
        () => aesGcmEncryptDetached(key, nonce, hex(vector.msg), aad),
        "INVALID_ARGUMENT",
        `${context}: encrypt`,
      );
      assert.match(
        error.message,
        /^invalid nonce "\d+ bytes": an AES-GCM nonce must be 1 to 128 bytes/,
      );
    }
  }
});

void test(`AES-GCM Wycheproof: ${acceptable.length} acceptable cases`, () => {
  // The copied file has no acceptable cases; the loop guards a future update of the file.
  for (const { group, test: vector } of acceptable) {
    const context = describeCase(vector);
    let plaintext: Uint8Array | undefined;
    try {
      plaintext = aesGcmDecryptDetached(
        hex(vector.key),
        hex(vector.iv),
        hex(vector.ct),
        hex(vector.tag),
        hex(vector.aad),
      );
    } catch (error) {
      assert.equal((error as { code?: unknown }).code, "DECRYPTION_FAILED", context);
    }
    if (plaintext !== undefined) {
      assert.ok(withinPolicy(group, vector), `${context}: accepted outside the size policy`);
      assert.equal(toHex(plaintext), vector.msg, `${context}: decrypted plaintext`);
    }
  }
});

void test("AES-GCM tag policy: truncated Wycheproof tags are rejected", () => {
  // Every valid case with a 96-bit nonce, its tag cut to each shorter size GCM defines.
  const sources = validInPolicy.filter((c) => c.test.iv.length / 2 === GCM_NONCE_BYTES);
  assert.ok(sources.length >= 100, `only ${sources.length} source cases`);

  let rejected = 0;
  for (const { test: vector } of sources) {
    for (const tagBytes of [15, 14, 13, 12, 8, 4]) {
      const shortTag = hex(vector.tag).subarray(0, tagBytes);
      expectArborError(
        () =>
          aesGcmDecryptDetached(
            hex(vector.key),
            hex(vector.iv),
            hex(vector.ct),
            shortTag,
            hex(vector.aad),
          ),
        "DECRYPTION_FAILED",
        `${describeCase(vector)} with a ${tagBytes * 8}-bit tag`,
      );
      rejected += 1;
    }
  }
  assert.equal(rejected, sources.length * 6);
});

void test("AES-GCM decrypt: plaintext owns its memory", () => {
  const vector = validInPolicy.find((c) => c.test.msg.length > 0)!.test;
  const plaintext = aesGcmDecryptDetached(
    hex(vector.key),
    hex(vector.iv),
    hex(vector.ct),
    hex(vector.tag),
    hex(vector.aad),
  );

  // A view into Node's shared Buffer pool could not be zeroed safely by the caller.
  assert.equal(plaintext.byteOffset, 0);
  assert.equal(plaintext.buffer.byteLength, plaintext.length);
});

void test("AES-GCM detached: wrong key sizes are INVALID_ARGUMENT", () => {
  const nonce = randomBytes(GCM_NONCE_BYTES);
  const key = randomBytes(20);

  const encryptError = expectArborError(
    () => aesGcmEncryptDetached(key, nonce, new Uint8Array(1), new Uint8Array(0)),
    "INVALID_ARGUMENT",
    "encrypt",
  );
  assert.equal(
    encryptError.message,
    'invalid key "20 bytes": an AES key must be 16, 24 or 32 bytes',
  );

  const decryptError = expectArborError(
    () =>
      aesGcmDecryptDetached(key, nonce, new Uint8Array(1), new Uint8Array(16), new Uint8Array(0)),
    "INVALID_ARGUMENT",
    "decrypt",
  );
  assert.equal(decryptError.message, encryptError.message);
});

void test("AES-GCM seal: round trip under a fresh nonce", () => {
  const key = randomBytes(AES_256_KEY_BYTES);
  const plaintext = new TextEncoder().encode("service key material");
  const aad = new TextEncoder().encode("context");

  const first = aesGcmSeal(key, plaintext, aad);
  const second = aesGcmSeal(key, plaintext, aad);

  assert.equal(first.length, GCM_NONCE_BYTES + plaintext.length + GCM_TAG_BYTES);
  assert.notEqual(
    toHex(first.subarray(0, GCM_NONCE_BYTES)),
    toHex(second.subarray(0, GCM_NONCE_BYTES)),
  );
  assert.deepEqual(aesGcmOpen(key, first, aad), plaintext);
  assert.deepEqual(aesGcmOpen(key, second, aad), plaintext);
});

void test("AES-GCM open: wrong AAD, key or blob fails uniformly", () => {
  const key = randomBytes(AES_256_KEY_BYTES);
  const aad = new TextEncoder().encode("context");
  const sealed = aesGcmSeal(key, new Uint8Array([1, 2, 3]), aad);
  const flipped = withFlippedBit(sealed, GCM_NONCE_BYTES);

  const attempts: Array<[string, () => unknown]> = [
    ["other AAD", () => aesGcmOpen(key, sealed, new TextEncoder().encode("contexT"))],
    ["other key", () => aesGcmOpen(randomBytes(AES_256_KEY_BYTES), sealed, aad)],
    ["flipped ciphertext bit", () => aesGcmOpen(key, flipped, aad)],
    ["truncated blob", () => aesGcmOpen(key, sealed.subarray(0, sealed.length - 1), aad)],
    ["blob shorter than nonce and tag", () => aesGcmOpen(key, sealed.subarray(0, 27), aad)],
  ];
  for (const [name, attempt] of attempts) {
    const error = expectArborError(attempt, "DECRYPTION_FAILED", name);
    assert.equal(error.message, DECRYPTION_FAILED_MESSAGE, name);
  }
});

void test("AES-GCM seal: only AES-256 keys", () => {
  const error = expectArborError(
    () => aesGcmSeal(randomBytes(16), new Uint8Array(1), new Uint8Array(0)),
    "INVALID_ARGUMENT",
    "seal with a 128-bit key",
  );
  assert.equal(error.message, 'invalid key "16 bytes": Arbor keys are AES-256 (32 bytes)');
});
