import assert from "node:assert/strict";
import {
  createPrivateKey,
  generateKeyPairSync,
  sign as nodeSign,
  type JsonWebKey,
} from "node:crypto";
import { test } from "node:test";

import {
  SIGNATURE_BYTES,
  generateSigningKey,
  importPrivateKey,
  publicJwkOf,
  sign,
  verifySignature,
  type SigningAlgorithm,
} from "../../src/crypto/index.ts";
import {
  base64url,
  casesOf,
  describeCase,
  expectArborError,
  hex,
  loadWycheproof,
  readJson,
  withFlippedBit,
  type WycheproofCase,
} from "./vectors.ts";

interface SignatureCase extends WycheproofCase {
  msg: string;
  sig: string;
}

interface Ed25519Group {
  publicKeyJwk: JsonWebKey;
  tests: SignatureCase[];
}

interface EcdsaGroup {
  publicKey: { curve: string; wx: string; wy: string };
  publicKeyJwk?: JsonWebKey;
  sha: string;
  tests: SignatureCase[];
}

interface CookbookExample {
  input: { key: JsonWebKey; alg: string };
  signing: { "sig-input": string; sig: string };
}

const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const encoder = new TextEncoder();

/** Runs a Wycheproof verify file: valid must verify, invalid must return false without throwing. */
function runVerifyVectors<Group extends { tests: SignatureCase[] }>(
  algorithm: SigningAlgorithm,
  groups: Array<{ group: Group; test: SignatureCase }>,
  publicJwkOfGroup: (group: Group) => JsonWebKey,
): { valid: number; invalid: number } {
  const counts = { valid: 0, invalid: 0 };
  for (const { group, test: vector } of groups) {
    const context = describeCase(vector);
    const publicJwk = publicJwkOfGroup(group);
    let verified: boolean;
    try {
      verified = verifySignature(algorithm, publicJwk, hex(vector.msg), hex(vector.sig));
    } catch (error) {
      assert.fail(`${context}: verifySignature threw ${String(error)}`);
    }

    if (vector.result === "valid") {
      assert.equal(verified, true, `${context}: a valid signature was rejected`);
      counts.valid += 1;
    } else if (vector.result === "invalid") {
      assert.equal(verified, false, `${context}: an invalid signature was accepted`);
      counts.invalid += 1;
    } else {
      assert.fail(`${context}: acceptable cases need an explicit decision`);
    }
  }
  return counts;
}

const ed25519File = loadWycheproof<Ed25519Group>("ed25519_test");

void test(`Ed25519 Wycheproof: ${ed25519File.numberOfTests} cases verify as marked`, () => {
  const counts = runVerifyVectors("EdDSA", casesOf(ed25519File), (group) => group.publicKeyJwk);

  // testvectors_v1 has 88 valid and 63 invalid cases and no acceptable ones.
  assert.ok(counts.valid >= 88, `only ${counts.valid} valid cases ran`);
  assert.ok(counts.invalid >= 63, `only ${counts.invalid} invalid cases ran`);
});

/** Builds a JWK from Wycheproof's hex coordinates for the groups that carry no `publicKeyJwk`. */
function ecdsaGroupJwk(group: EcdsaGroup): JsonWebKey {
  if (group.publicKeyJwk !== undefined) return group.publicKeyJwk;

  const coordinate = (value: string) => {
    const bytes = hex(value.padStart(64, "0").slice(-64));
    return Buffer.from(bytes).toString("base64url");
  };
  return {
    kty: "EC",
    crv: "P-256",
    x: coordinate(group.publicKey.wx),
    y: coordinate(group.publicKey.wy),
  };
}

const ecdsaFile = loadWycheproof<EcdsaGroup>("ecdsa_secp256r1_sha256_p1363_test");

void test(`ES256 Wycheproof P1363: ${ecdsaFile.numberOfTests} cases verify as marked`, () => {
  for (const group of ecdsaFile.testGroups) {
    assert.equal(group.publicKey.curve, "secp256r1");
    assert.equal(group.sha, "SHA-256");
  }
  const counts = runVerifyVectors("ES256", casesOf(ecdsaFile), ecdsaGroupJwk);

  // testvectors_v1 has 173 valid and 89 invalid cases and no acceptable ones.
  assert.ok(counts.valid >= 173, `only ${counts.valid} valid cases ran`);
  assert.ok(counts.invalid >= 89, `only ${counts.invalid} invalid cases ran`);
});

void test("RFC 8037 Ed25519 JWS example", () => {
  const example = readJson("jose-cookbook/rfc8037-ed25519-jws.json") as CookbookExample;
  const { d: _private, ...publicJwk } = example.input.key;
  const signingInput = encoder.encode(example.signing["sig-input"]);
  const expected = base64url(example.signing.sig);

  assert.equal(example.input.alg, "EdDSA");
  assert.equal(verifySignature("EdDSA", publicJwk, signingInput, expected), true);

  // Ed25519 is deterministic, so signing with the example's private key reproduces the signature.
  const privateKey = createPrivateKey({ key: example.input.key, format: "jwk" });
  assert.deepEqual(sign("EdDSA", privateKey, signingInput), expected);

  const tampered = withFlippedBit(expected, 10);
  assert.equal(verifySignature("EdDSA", publicJwk, signingInput, tampered), false);
});

void test("RFC 7515 A.3 ES256 JWS example", () => {
  // Typed in from RFC 7515 Appendix A.3 (JWS using ECDSA P-256 SHA-256). ECDSA is randomized, so
  // the example can only be verified, not reproduced.
  const publicJwk: JsonWebKey = {
    kty: "EC",
    crv: "P-256",
    x: "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    y: "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
  };
  const signingInput = encoder.encode(
    "eyJhbGciOiJFUzI1NiJ9" +
      ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt" +
      "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
  );
  const signature = base64url(
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSA" + "pmWQxfKTUJqPP3-Kg6NU1Q",
  );

  assert.equal(signature.length, SIGNATURE_BYTES);
  assert.equal(verifySignature("ES256", publicJwk, signingInput, signature), true);

  const otherInput = withFlippedBit(signingInput, signingInput.length - 1);
  assert.equal(verifySignature("ES256", publicJwk, otherInput, signature), false);
});

void test("RFC 7520 4.3 example: a P-521 key is not an ES256 key", () => {
  // The RFC 7520 section 4.3 example is ES512 on P-521, which Arbor does not support.
  const example = readJson("jose-cookbook/rfc7520-4_3-ecdsa-signature.json") as CookbookExample;
  const { d: _private, ...publicJwk } = example.input.key;
  const signingInput = encoder.encode(example.signing["sig-input"]);
  const signature = base64url(example.signing.sig);

  assert.equal(example.input.alg, "ES512");
  assert.equal(signature.length, 132);
  const error = expectArborError(
    () => verifySignature("ES256", publicJwk, signingInput, signature),
    "INVALID_ARGUMENT",
    "P-521 key for ES256",
  );
  assert.equal(error.message, 'invalid publicJwk "secp521r1 key": ES256 needs a P-256 key');
});

for (const algorithm of ["EdDSA", "ES256"] as const) {
  void test(`${algorithm}: sign then verify`, () => {
    const generated = generateSigningKey(algorithm);
    const privateKey = importPrivateKey(generated.privateKeyPkcs8);
    const data = encoder.encode("header.payload");

    const signature = sign(algorithm, privateKey, data);

    assert.equal(signature.length, SIGNATURE_BYTES);
    assert.equal(verifySignature(algorithm, generated.publicJwk, data, signature), true);
    assert.equal(verifySignature(algorithm, publicJwkOf(privateKey), data, signature), true);
    assert.equal(
      verifySignature(algorithm, generated.publicJwk, encoder.encode("other"), signature),
      false,
    );
  });

  void test(`${algorithm}: wrong signature lengths return false`, () => {
    const generated = generateSigningKey(algorithm);
    const data = encoder.encode("data");
    const signature = sign(algorithm, importPrivateKey(generated.privateKeyPkcs8), data);

    const variants: Array<[string, Uint8Array]> = [
      ["empty", new Uint8Array(0)],
      ["63 bytes", signature.subarray(0, 63)],
      ["65 bytes", Uint8Array.of(...signature, 0)],
      ["128 bytes", Uint8Array.of(...signature, ...signature)],
    ];
    for (const [name, variant] of variants) {
      assert.equal(verifySignature(algorithm, generated.publicJwk, data, variant), false, name);
    }
  });
}

void test("ES256: DER signatures are rejected", () => {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const data = encoder.encode("data");
  const der = new Uint8Array(nodeSign("sha256", data, privateKey));

  assert.equal(der[0], 0x30, "node's default encoding is a DER SEQUENCE");
  assert.equal(verifySignature("ES256", publicKey.export({ format: "jwk" }), data, der), false);
});

/** Splits a P1363 signature into r and s, applies `change`, and joins them again. */
function withScalars(signature: Uint8Array, change: (r: bigint, s: bigint) => [bigint, bigint]) {
  const toBigInt = (bytes: Uint8Array) => BigInt(`0x${Buffer.from(bytes).toString("hex")}`);
  const toBytes = (value: bigint) => hex(value.toString(16).padStart(64, "0"));
  const [r, s] = change(toBigInt(signature.subarray(0, 32)), toBigInt(signature.subarray(32)));
  return Uint8Array.of(...toBytes(r), ...toBytes(s));
}

void test("ES256: r or s out of range returns false", () => {
  const generated = generateSigningKey("ES256");
  const data = encoder.encode("data");
  const signature = sign("ES256", importPrivateKey(generated.privateKeyPkcs8), data);

  const variants: Array<[string, Uint8Array]> = [
    ["r = 0", withScalars(signature, (_r, s) => [0n, s])],
    ["s = 0", withScalars(signature, (r) => [r, 0n])],
    ["r = s = 0", new Uint8Array(64)],
    ["r = n", withScalars(signature, (_r, s) => [P256_ORDER, s])],
    ["s = n", withScalars(signature, (r) => [r, P256_ORDER])],
    ["r = 2^256 - 1", withScalars(signature, (_r, s) => [2n ** 256n - 1n, s])],
    ["all bytes 0xff", new Uint8Array(64).fill(0xff)],
  ];
  for (const [name, variant] of variants) {
    assert.equal(variant.length, 64, name);
    assert.equal(verifySignature("ES256", generated.publicJwk, data, variant), false, name);
  }
});

void test("ES256: high-s form still verifies", () => {
  // JOSE and Wycheproof treat (r, n - s) as valid because ES256 has no low-s rule.
  const generated = generateSigningKey("ES256");
  const data = encoder.encode("data");
  const signature = sign("ES256", importPrivateKey(generated.privateKeyPkcs8), data);
  const mirrored = withScalars(signature, (r, s) => [r, P256_ORDER - s]);

  assert.notDeepEqual(mirrored, signature);
  assert.equal(verifySignature("ES256", generated.publicJwk, data, mirrored), true);
});

void test("ES256: signatures are randomized", () => {
  const generated = generateSigningKey("ES256");
  const privateKey = importPrivateKey(generated.privateKeyPkcs8);
  const data = encoder.encode("data");

  const first = sign("ES256", privateKey, data);
  const second = sign("ES256", privateKey, data);

  assert.notDeepEqual(first, second);
  assert.equal(verifySignature("ES256", generated.publicJwk, data, first), true);
  assert.equal(verifySignature("ES256", generated.publicJwk, data, second), true);
});

void test("verifySignature: key that does not fit the algorithm", () => {
  const data = encoder.encode("data");
  const signature = new Uint8Array(64);
  const ed25519Jwk = generateSigningKey("EdDSA").publicJwk;
  const p256Jwk = generateSigningKey("ES256").publicJwk;

  const ecForEdDSA = expectArborError(
    () => verifySignature("EdDSA", p256Jwk, data, signature),
    "INVALID_ARGUMENT",
    "P-256 key for EdDSA",
  );
  assert.equal(
    ecForEdDSA.message,
    'invalid publicJwk "prime256v1 key": EdDSA needs an Ed25519 key',
  );

  const okpForES256 = expectArborError(
    () => verifySignature("ES256", ed25519Jwk, data, signature),
    "INVALID_ARGUMENT",
    "Ed25519 key for ES256",
  );
  assert.equal(okpForES256.message, 'invalid publicJwk "ed25519 key": ES256 needs a P-256 key');

  const notOnCurve = expectArborError(
    () => verifySignature("ES256", { ...p256Jwk, y: p256Jwk.x }, data, signature),
    "INVALID_ARGUMENT",
    "point not on the curve",
  );
  // The text in brackets is Node's own reason, so only the prefix is checked.
  assert.match(
    notOnCurve.message,
    /^invalid publicJwk "EC P-256 key": not a valid public JWK \(.+\)$/,
  );
});

void test("sign: key that does not fit the algorithm", () => {
  const data = encoder.encode("data");
  const ed25519 = generateKeyPairSync("ed25519");
  const p256 = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" });

  const publicKey = expectArborError(
    () => sign("EdDSA", ed25519.publicKey, data),
    "INVALID_ARGUMENT",
    "public key",
  );
  assert.equal(
    publicKey.message,
    'invalid privateKey "public key": signing with EdDSA needs a private key',
  );

  const ecForEdDSA = expectArborError(
    () => sign("EdDSA", p256.privateKey, data),
    "INVALID_ARGUMENT",
    "P-256 key for EdDSA",
  );
  assert.equal(
    ecForEdDSA.message,
    'invalid privateKey "prime256v1 key": EdDSA needs an Ed25519 key',
  );

  const p384ForES256 = expectArborError(
    () => sign("ES256", p384.privateKey, data),
    "INVALID_ARGUMENT",
    "P-384 key for ES256",
  );
  assert.equal(p384ForES256.message, 'invalid privateKey "secp384r1 key": ES256 needs a P-256 key');
});
