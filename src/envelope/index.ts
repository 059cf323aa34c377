// Public API of envelope format v1. Internal helpers (such as encryption with a fixed message id
// for the test vector) stay in their modules and are deliberately not exported here.
export { encryptEnvelope } from "./encrypt.ts";
export { decryptEnvelope, type DataKeyResolver, type DecryptedEnvelope } from "./decrypt.ts";
export { parseEnvelopeHeader, type EnvelopeHeader, type ParsedEnvelopeHeader } from "./header.ts";
export type { EnvelopeEncryptParams } from "./params.ts";
export type { EncryptionContext } from "./context.ts";
export {
  createEncryptStream,
  createDecryptStream,
  EnvelopeEncryptStream,
  EnvelopeDecryptStream,
} from "./stream.ts";
export { toTextForm, fromTextForm, TEXT_FORM_PREFIX } from "./text-form.ts";
export {
  ENVELOPE_FORMAT_VERSION,
  DEFAULT_FRAME_SIZE,
  MIN_FRAME_SIZE,
  MAX_FRAME_SIZE,
  MAX_WRAPPED_DATA_KEY_BYTES,
  MAX_CONTEXT_ENTRIES,
  MAX_CONTEXT_KEY_BYTES,
  MAX_CONTEXT_VALUE_BYTES,
  MAX_CONTEXT_BYTES,
  MAX_HEADER_BYTES,
} from "./format.ts";
export {
  wrappedDataKeyFromText,
  wrappedDataKeyToText,
  parseWrappedDataKey,
  WRAPPED_DATA_KEY_PREFIX,
} from "./data-key.ts";
export { createEnvelopeService, type EnvelopeService } from "./service.ts";
