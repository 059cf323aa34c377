import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign as nodeSign,
  verify as nodeVerify,
  type JsonWebKey,
  type KeyObject,
} from "node:crypto";

import { invalidArgument } from "../errors/index.ts";

/** Signature algorithms a `sign` service key may use, named as JOSE names them. */
export type SigningAlgorithm = "EdDSA" | "ES256";

export interface GeneratedSigningKey {
  /** PKCS#8 DER of the private key; the caller wraps it and then zeroes it. */
  privateKeyPkcs8: Uint8Array;
  /** Public key as a JWK without `kid`, `alg` or `use` (the caller adds those). */
  publicJwk: JsonWebKey;
}

/** Size in bytes of every signature both algorithms produce: Ed25519 `R || S`, ES256 `r || s`. */
export const SIGNATURE_BYTES = 64;

/** Order n of the P-256 (secp256r1) base point. A valid ECDSA signature has 0 < r, s < n. */
const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

export function generateSigningKey(algorithm: SigningAlgorithm): GeneratedSigningKey {
  const pair =
    algorithm === "EdDSA"
      ? generateKeyPairSync("ed25519")
      : generateKeyPairSync("ec", { namedCurve: "P-256" });
  const der = pair.privateKey.export({ format: "der", type: "pkcs8" });
  return {
    privateKeyPkcs8: new Uint8Array(der.buffer, der.byteOffset, der.length),
    publicJwk: pair.publicKey.export({ format: "jwk" }),
  };
}

/** Imports a PKCS#8 DER private key. The returned KeyObject copies the bytes; zero the input. */
export function importPrivateKey(pkcs8: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" });
}

export function publicJwkOf(privateKey: KeyObject): JsonWebKey {
  return createPublicKey(privateKey).export({ format: "jwk" });
}

/**
 * Signs `data` and returns the 64-byte JOSE form of the signature: Ed25519 (RFC 8032) for EdDSA,
 * ECDSA P-256 with SHA-256 in IEEE P1363 `r || s` form for ES256. Throws INVALID_ARGUMENT when
 * `privateKey` is not a private key of the algorithm's curve.
 */
export function sign(
  algorithm: SigningAlgorithm,
  privateKey: KeyObject,
  data: Uint8Array,
): Uint8Array {
  if (privateKey.type !== "private") {
    throw invalidArgument(
      "privateKey",
      `${privateKey.type} key`,
      `signing with ${algorithm} needs a private key`,
    );
  }
  requireKeyFor(algorithm, privateKey, "privateKey");

  const signature =
    algorithm === "EdDSA"
      ? nodeSign(null, data, privateKey)
      : nodeSign("sha256", data, { key: privateKey, dsaEncoding: "ieee-p1363" });
  return new Uint8Array(signature.buffer, signature.byteOffset, signature.length);
}

/**
 * Verifies a 64-byte JOSE signature made by {@link sign}. Any malformed or wrong signature returns
 * false and never throws: a length other than 64 bytes (so no DER ECDSA signatures), an ES256 `r`
 * or `s` outside 1..n-1, or a failed check. Throws INVALID_ARGUMENT only when `publicJwk` is not a
 * usable key of the algorithm's curve, which is a caller bug, not a bad signature.
 */
export function verifySignature(
  algorithm: SigningAlgorithm,
  publicJwk: JsonWebKey,
  data: Uint8Array,
  signature: Uint8Array,
): boolean {
  const publicKey = importPublicJwk(algorithm, publicJwk);
  if (signature.length !== SIGNATURE_BYTES) return false;

  if (algorithm === "ES256") {
    // OpenSSL checks the range too; checking here keeps the rule independent of the library.
    const half = SIGNATURE_BYTES / 2;
    if (
      !isScalarInRange(signature.subarray(0, half)) ||
      !isScalarInRange(signature.subarray(half))
    ) {
      return false;
    }
  }

  try {
    return algorithm === "EdDSA"
      ? nodeVerify(null, data, publicKey, signature)
      : nodeVerify("sha256", data, { key: publicKey, dsaEncoding: "ieee-p1363" }, signature);
  } catch {
    // Node 20 returned false for every bad signature tried, so this only keeps the no-throw
    // contract should another Node or OpenSSL version throw instead.
    return false;
  }
}

function importPublicJwk(algorithm: SigningAlgorithm, publicJwk: JsonWebKey): KeyObject {
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: publicJwk, format: "jwk" });
  } catch (error) {
    // Only the public parameters kty and crv are quoted, never coordinates or a stray `d`.
    const described = [publicJwk.kty, publicJwk.crv].filter((part) => part !== undefined).join(" ");
    throw invalidArgument(
      "publicJwk",
      `${described} key`,
      `not a valid public JWK (${(error as Error).message})`,
    );
  }
  requireKeyFor(algorithm, publicKey, "publicJwk");
  return publicKey;
}

/** Rejects a key whose type or curve does not fit the algorithm, whatever its JWK `alg` is. */
function requireKeyFor(algorithm: SigningAlgorithm, key: KeyObject, parameter: string): void {
  const matches =
    algorithm === "EdDSA"
      ? key.asymmetricKeyType === "ed25519"
      : key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1";
  if (!matches) {
    const actual = key.asymmetricKeyDetails?.namedCurve ?? key.asymmetricKeyType ?? "unknown";
    const expected = algorithm === "EdDSA" ? "an Ed25519 key" : "a P-256 key";
    throw invalidArgument(parameter, `${actual} key`, `${algorithm} needs ${expected}`);
  }
}

/** Returns whether a big-endian scalar lies in 1..n-1 for the P-256 group order n. */
function isScalarInRange(bytes: Uint8Array): boolean {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return value > 0n && value < P256_ORDER;
}
