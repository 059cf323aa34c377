import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type JsonWebKey,
  type KeyObject,
} from "node:crypto";

/** Signature algorithms a `sign` service key may use, named as JOSE names them. */
export type SigningAlgorithm = "EdDSA" | "ES256";

export interface GeneratedSigningKey {
  /** PKCS#8 DER of the private key; the caller wraps it and then zeroes it. */
  privateKeyPkcs8: Uint8Array;
  /** Public key as a JWK without `kid`, `alg` or `use` (the caller adds those). */
  publicJwk: JsonWebKey;
}

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
