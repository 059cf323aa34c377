import type { JsonWebKey } from "node:crypto";
import { endianness } from "node:os";

import type { AesGCM } from "pkcs11js";

import { GCM_NONCE_BYTES, GCM_TAG_BYTES } from "../../crypto/index.ts";
import { pkcs11js, type AttributeResult, type Mechanism, type Template } from "./calls.ts";

/**
 * PKCS#11 3.0 values for Ed25519, which pkcs11js 2.1.7 does not export. SoftHSM 2.6.1 implements
 * them when it is built with OpenSSL 1.1.1 or later, as Debian's package is.
 */
export const CKK_EC_EDWARDS = 0x40;
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
export const CKM_EDDSA = 0x1057;
/** DER of the OID id-Ed25519 (1.3.101.112), the CKA_EC_PARAMS of an Ed25519 key. */
export const ED25519_EC_PARAMS = Buffer.from("06032b6570", "hex");

export const ROOT_KEY_BYTES = 32;
export const ED25519_SIGNATURE_BYTES = 64;
const ED25519_PUBLIC_KEY_BYTES = 32;

/** Bytes a root wrap adds to the plaintext: the IV in front and the GCM tag at the end. */
export const ROOT_WRAP_OVERHEAD = GCM_NONCE_BYTES + GCM_TAG_BYTES;

/** CKM_AES_GCM with a 96-bit IV and a 128-bit tag. */
export function aesGcmMechanism(iv: Uint8Array, aad: Uint8Array): Mechanism {
  const p = pkcs11js();
  const parameter: AesGCM = {
    type: p.CK_PARAMS_AES_GCM,
    iv: toBuffer(iv),
    aad: toBuffer(aad),
    ivBits: GCM_NONCE_BYTES * 8,
    tagBits: GCM_TAG_BYTES * 8,
  };
  return { mechanism: p.CKM_AES_GCM, parameter };
}

/**
 * Template of a root key version: AES-256 on the token, private, sensitive and never extractable,
 * usable for encrypt and decrypt only. Sign, verify, derive, wrap and unwrap are set false
 * explicitly because some modules default them to true.
 */
export function rootKeyTemplate(label: string, id: Uint8Array): Template {
  const p = pkcs11js();
  return [
    { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
    { type: p.CKA_KEY_TYPE, value: p.CKK_AES },
    { type: p.CKA_VALUE_LEN, value: ROOT_KEY_BYTES },
    { type: p.CKA_TOKEN, value: true },
    { type: p.CKA_PRIVATE, value: true },
    { type: p.CKA_SENSITIVE, value: true },
    { type: p.CKA_EXTRACTABLE, value: false },
    { type: p.CKA_MODIFIABLE, value: true },
    { type: p.CKA_ENCRYPT, value: true },
    { type: p.CKA_DECRYPT, value: true },
    { type: p.CKA_SIGN, value: false },
    { type: p.CKA_VERIFY, value: false },
    { type: p.CKA_DERIVE, value: false },
    { type: p.CKA_WRAP, value: false },
    { type: p.CKA_UNWRAP, value: false },
    { type: p.CKA_LABEL, value: label },
    { type: p.CKA_ID, value: toBuffer(id) },
  ];
}

/** Templates of the audit checkpoint key pair: Ed25519, the private half sign-only. */
export function checkpointKeyTemplates(
  label: string,
  id: Uint8Array,
): { publicTemplate: Template; privateTemplate: Template } {
  const p = pkcs11js();
  const common = [
    { type: p.CKA_KEY_TYPE, value: CKK_EC_EDWARDS },
    { type: p.CKA_TOKEN, value: true },
    { type: p.CKA_LABEL, value: label },
    { type: p.CKA_ID, value: toBuffer(id) },
  ];
  return {
    publicTemplate: [
      ...common,
      { type: p.CKA_CLASS, value: p.CKO_PUBLIC_KEY },
      { type: p.CKA_EC_PARAMS, value: ED25519_EC_PARAMS },
      { type: p.CKA_VERIFY, value: true },
      { type: p.CKA_ENCRYPT, value: false },
      { type: p.CKA_WRAP, value: false },
      { type: p.CKA_DERIVE, value: false },
    ],
    privateTemplate: [
      ...common,
      { type: p.CKA_CLASS, value: p.CKO_PRIVATE_KEY },
      { type: p.CKA_PRIVATE, value: true },
      { type: p.CKA_SENSITIVE, value: true },
      { type: p.CKA_EXTRACTABLE, value: false },
      { type: p.CKA_SIGN, value: true },
      { type: p.CKA_DECRYPT, value: false },
      { type: p.CKA_UNWRAP, value: false },
      { type: p.CKA_DERIVE, value: false },
    ],
  };
}

/** Search template for a secret key by label, and by CKA_ID when one is recorded. */
export function secretKeySearch(label: string, id: Uint8Array | null): Template {
  const p = pkcs11js();
  const template: Template = [
    { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
    { type: p.CKA_LABEL, value: label },
  ];
  if (id !== null && id.length > 0) template.push({ type: p.CKA_ID, value: toBuffer(id) });
  return template;
}

export function keyPairSearch(
  objectClass: "public" | "private",
  label: string,
  id: Uint8Array,
): Template {
  const p = pkcs11js();
  return [
    { type: p.CKA_CLASS, value: objectClass === "public" ? p.CKO_PUBLIC_KEY : p.CKO_PRIVATE_KEY },
    { type: p.CKA_KEY_TYPE, value: CKK_EC_EDWARDS },
    { type: p.CKA_LABEL, value: label },
    { type: p.CKA_ID, value: toBuffer(id) },
  ];
}

/** Attributes of a secret key that decide whether it may be a root key. */
export interface SecretKeyAttributes {
  keyType: number;
  valueLength: number;
  token: boolean;
  sensitive: boolean;
  extractable: boolean;
  neverExtractable: boolean;
  encrypt: boolean;
  decrypt: boolean;
  sign: boolean;
  verify: boolean;
  derive: boolean;
  wrap: boolean;
  unwrap: boolean;
  id: Uint8Array;
}

/** Template that `readSecretKeyAttributes` expects back from C_GetAttributeValue. */
export function secretKeyAttributeQuery(): Template {
  const p = pkcs11js();
  return [
    p.CKA_KEY_TYPE,
    p.CKA_VALUE_LEN,
    p.CKA_TOKEN,
    p.CKA_SENSITIVE,
    p.CKA_EXTRACTABLE,
    p.CKA_NEVER_EXTRACTABLE,
    p.CKA_ENCRYPT,
    p.CKA_DECRYPT,
    p.CKA_SIGN,
    p.CKA_VERIFY,
    p.CKA_DERIVE,
    p.CKA_WRAP,
    p.CKA_UNWRAP,
    p.CKA_ID,
  ].map((type) => ({ type }));
}

export function readSecretKeyAttributes(results: AttributeResult[]): SecretKeyAttributes {
  const p = pkcs11js();
  const value = (type: number): Buffer => {
    const found = results.find((result) => result.type === type);
    if (found === undefined) throw new Error(`attribute 0x${type.toString(16)} is missing`);
    return found.value;
  };
  const flag = (type: number): boolean => value(type).some((byte) => byte !== 0);
  return {
    keyType: readUlong(value(p.CKA_KEY_TYPE)),
    valueLength: readUlong(value(p.CKA_VALUE_LEN)),
    token: flag(p.CKA_TOKEN),
    sensitive: flag(p.CKA_SENSITIVE),
    extractable: flag(p.CKA_EXTRACTABLE),
    neverExtractable: flag(p.CKA_NEVER_EXTRACTABLE),
    encrypt: flag(p.CKA_ENCRYPT),
    decrypt: flag(p.CKA_DECRYPT),
    sign: flag(p.CKA_SIGN),
    verify: flag(p.CKA_VERIFY),
    derive: flag(p.CKA_DERIVE),
    wrap: flag(p.CKA_WRAP),
    unwrap: flag(p.CKA_UNWRAP),
    id: Uint8Array.from(value(p.CKA_ID)),
  };
}

/**
 * Reasons a secret key must not serve as the root key; empty when it may. A root key must be an
 * AES-256 token object that never leaves the token in plaintext and can only encrypt and decrypt,
 * so no other mechanism can turn it into an oracle or export it under another key.
 */
export function rootKeyProblems(attributes: SecretKeyAttributes): string[] {
  const p = pkcs11js();
  const problems: string[] = [];
  if (attributes.keyType !== p.CKK_AES) problems.push("it is not an AES key (CKA_KEY_TYPE)");
  if (attributes.valueLength !== ROOT_KEY_BYTES) {
    problems.push(`it has ${attributes.valueLength} bytes, not ${ROOT_KEY_BYTES} (CKA_VALUE_LEN)`);
  }
  if (!attributes.token) problems.push("it is a session object (CKA_TOKEN is false)");
  if (!attributes.sensitive) problems.push("CKA_SENSITIVE is false");
  if (attributes.extractable) problems.push("CKA_EXTRACTABLE is true");
  if (!attributes.encrypt || !attributes.decrypt) {
    problems.push("CKA_ENCRYPT or CKA_DECRYPT is false");
  }
  for (const [name, set] of [
    ["CKA_SIGN", attributes.sign],
    ["CKA_VERIFY", attributes.verify],
    ["CKA_DERIVE", attributes.derive],
    ["CKA_WRAP", attributes.wrap],
    ["CKA_UNWRAP", attributes.unwrap],
  ] as const) {
    if (set) problems.push(`${name} is true`);
  }
  return problems;
}

/**
 * Converts an Ed25519 CKA_EC_POINT to a JWK. PKCS#11 3.0 stores the point DER-encoded as an
 * OCTET STRING (04 20 || 32 bytes), which SoftHSM 2.6.1 returns; some modules return the raw 32
 * bytes, which are accepted too.
 */
export function ed25519JwkFromEcPoint(point: Uint8Array): JsonWebKey {
  let raw: Uint8Array;
  if (point.length === ED25519_PUBLIC_KEY_BYTES + 2 && point[0] === 0x04 && point[1] === 0x20) {
    raw = point.subarray(2);
  } else if (point.length === ED25519_PUBLIC_KEY_BYTES) {
    raw = point;
  } else {
    throw new Error(`CKA_EC_POINT has ${point.length} bytes, not an Ed25519 public key`);
  }
  return { kty: "OKP", crv: "Ed25519", x: Buffer.from(raw).toString("base64url") };
}

/** Reads a CK_ULONG attribute, stored in the platform's byte order and width (4 or 8 bytes). */
function readUlong(bytes: Buffer): number {
  const littleEndian = endianness() === "LE";
  if (bytes.length === 8) {
    return Number(littleEndian ? bytes.readBigUInt64LE(0) : bytes.readBigUInt64BE(0));
  }
  if (bytes.length === 4) return littleEndian ? bytes.readUInt32LE(0) : bytes.readUInt32BE(0);
  throw new Error(`a CK_ULONG attribute has ${bytes.length} bytes`);
}

/** Returns a Buffer view of the same memory, because pkcs11js accepts only Buffers. */
export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}
