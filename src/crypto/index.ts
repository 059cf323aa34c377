export { encodeLengthPrefixed, type EncodableField } from "./encoding.ts";
export {
  aesGcmSeal,
  aesGcmOpen,
  aesGcmEncryptDetached,
  aesGcmDecryptDetached,
  AES_256_KEY_BYTES,
  GCM_MAX_NONCE_BYTES,
  GCM_NONCE_BYTES,
  GCM_TAG_BYTES,
} from "./aes-gcm.ts";
export { hkdfSha256, HKDF_SHA256_MAX_OUTPUT } from "./hkdf.ts";
export { aesKeyWrapPad, aesKeyUnwrapPad } from "./key-wrap.ts";
export { constantTimeEqual } from "./compare.ts";
export { zeroize, withZeroed } from "./zero.ts";
export { randomBytes, newOpaqueId, encodeBase32, OPAQUE_ID_PATTERN } from "./random.ts";
export {
  generateOpaqueSecret,
  parseOpaqueSecret,
  secretTypes,
  type SecretType,
} from "./opaque-secret.ts";
export {
  generateSigningKey,
  importPrivateKey,
  publicJwkOf,
  sign,
  verifySignature,
  SIGNATURE_BYTES,
  type SigningAlgorithm,
  type GeneratedSigningKey,
} from "./signing.ts";
