/**
 * Constants of envelope format v1. Every value here is part of a stored format: changing one
 * breaks envelopes that users already hold, so a change needs a new format version byte instead.
 * docs/envelope-format.md describes the same layout byte by byte.
 */

/** First four header bytes, ASCII "ARBE" (Arbor envelope). */
export const ENVELOPE_MAGIC: Readonly<Uint8Array> = Uint8Array.of(0x41, 0x52, 0x42, 0x45);
export const ENVELOPE_FORMAT_VERSION = 1;

export const DATA_KEY_BYTES = 32;
export const MESSAGE_ID_BYTES = 32;
export const COMMITMENT_BYTES = 32;
export const DERIVED_KEY_BYTES = 32;

/** A service key id: `key_` and 26 base32 characters, ASCII, so always 30 bytes. */
export const KEY_ID_PATTERN = /^key_[a-z2-7]{26}$/;
export const KEY_ID_BYTES = 30;
export const MIN_KEY_VERSION = 1;
export const MAX_KEY_VERSION = 0xffff_ffff;

/** Plaintext bytes per frame. The minimum keeps per-frame overhead (25 bytes) sane. */
export const MIN_FRAME_SIZE = 16;
export const MAX_FRAME_SIZE = 1024 * 1024;
export const DEFAULT_FRAME_SIZE = 64 * 1024;

/** Generous for a GCM-wrapped 32-byte key (60 bytes) and room for larger wrapping schemes. */
export const MAX_WRAPPED_DATA_KEY_BYTES = 4096;

export const MAX_CONTEXT_ENTRIES = 64;
export const MAX_CONTEXT_KEY_BYTES = 128;
export const MAX_CONTEXT_VALUE_BYTES = 1024;
/** Maximum size of the serialised context field, including its entry count and length prefixes. */
export const MAX_CONTEXT_BYTES = 8192;

/** Frame wire prefix: uint32 index, uint8 final flag, uint32 ciphertext length. */
export const FRAME_PREFIX_BYTES = 9;
export const FRAME_TAG_BYTES = 16;
/** Frame indexes are uint32 on the wire, so one message has at most 2^32 frames. */
export const MAX_FRAME_COUNT = 2 ** 32;

/** Header bytes from the magic through the frame size, before the commitment. */
export const MAX_HEADER_PREFIX_BYTES =
  ENVELOPE_MAGIC.length +
  1 + // format version
  1 +
  KEY_ID_BYTES +
  4 + // key version
  MESSAGE_ID_BYTES +
  MAX_CONTEXT_BYTES +
  2 +
  MAX_WRAPPED_DATA_KEY_BYTES +
  4; // frame size
export const MAX_HEADER_BYTES = MAX_HEADER_PREFIX_BYTES + COMMITMENT_BYTES;

/** HKDF infos, HMAC and AAD labels; each is the first length-prefixed field of its input. */
export const LABEL_MESSAGE_KEY = "arbor/envelope/v1/message-key";
export const LABEL_COMMITMENT_KEY = "arbor/envelope/v1/commitment-key";
export const LABEL_COMMITMENT = "arbor/envelope/v1/commitment";
export const LABEL_FRAME = "arbor/envelope/v1/frame";
