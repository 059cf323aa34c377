import {
  aesGcmDecryptDetached,
  aesGcmEncryptDetached,
  encodeLengthPrefixed,
  GCM_NONCE_BYTES,
} from "../crypto/index.ts";
import { malformedEnvelope } from "./cursor.ts";
import { FRAME_PREFIX_BYTES, FRAME_TAG_BYTES, LABEL_FRAME } from "./format.ts";

/** AES-256-GCM decryption of one frame; the decryptor takes it as a parameter so tests can count calls. */
export type FrameDecryptFunction = (
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  tag: Uint8Array,
  aad: Uint8Array,
) => Uint8Array;

export const defaultFrameDecrypt: FrameDecryptFunction = aesGcmDecryptDetached;

/** The fields of a frame's 9-byte wire prefix. */
export interface FramePrefix {
  index: number;
  final: boolean;
  ciphertextLength: number;
}

/**
 * Derives a frame's 96-bit nonce: four zero bytes, then the frame index as uint64 big-endian.
 * Nonces are unique because the message key is unique per message and indexes are unique within
 * a message; no nonce ever comes from a caller.
 */
export function frameNonce(index: number): Uint8Array {
  const nonce = new Uint8Array(GCM_NONCE_BYTES);
  new DataView(nonce.buffer).setBigUint64(4, BigInt(index), false);
  return nonce;
}

/** Builds a frame's AAD, which binds the whole header, the frame's position and the final flag. */
export function frameAad(headerDigest: Uint8Array, index: number, final: boolean): Uint8Array {
  return encodeLengthPrefixed(LABEL_FRAME, headerDigest, index, Uint8Array.of(final ? 1 : 0));
}

export function frameWireLength(plaintextLength: number): number {
  return FRAME_PREFIX_BYTES + plaintextLength + FRAME_TAG_BYTES;
}

/**
 * Encrypts one frame and writes it at `offset` in `target` as index, final flag, ciphertext
 * length, ciphertext and tag. Returns the number of bytes written.
 */
export function writeFrame(
  target: Uint8Array,
  offset: number,
  messageKey: Uint8Array,
  headerDigest: Uint8Array,
  index: number,
  final: boolean,
  plaintext: Uint8Array,
): number {
  const { ciphertext, tag } = aesGcmEncryptDetached(
    messageKey,
    frameNonce(index),
    plaintext,
    frameAad(headerDigest, index, final),
  );

  const view = new DataView(target.buffer, target.byteOffset + offset, FRAME_PREFIX_BYTES);
  view.setUint32(0, index, false);
  view.setUint8(4, final ? 1 : 0);
  view.setUint32(5, ciphertext.length, false);
  target.set(ciphertext, offset + FRAME_PREFIX_BYTES);
  target.set(tag, offset + FRAME_PREFIX_BYTES + ciphertext.length);
  return frameWireLength(ciphertext.length);
}

/**
 * Reads and checks a frame prefix before the rest of the frame is buffered. The index must be
 * the expected one. The length must be exactly `frameSize` for a non-final frame and less than
 * `frameSize` for the final frame, so every plaintext has exactly one frame layout.
 */
export function readFramePrefix(
  prefix: Uint8Array,
  expectedIndex: number,
  frameSize: number,
): FramePrefix {
  const view = new DataView(prefix.buffer, prefix.byteOffset, FRAME_PREFIX_BYTES);
  const index = view.getUint32(0, false);
  const flag = view.getUint8(4);
  const ciphertextLength = view.getUint32(5, false);

  if (index !== expectedIndex) throw malformedEnvelope("frame index out of sequence");
  if (flag !== 0 && flag !== 1) throw malformedEnvelope("frame flag is neither 0 nor 1");
  const final = flag === 1;
  if (final ? ciphertextLength >= frameSize : ciphertextLength !== frameSize) {
    throw malformedEnvelope("frame length does not match the frame size");
  }
  return { index, final, ciphertextLength };
}

/**
 * Verifies and decrypts one whole wire frame whose prefix was checked by {@link readFramePrefix}.
 * Returns plaintext only after the tag verified; any failure is DECRYPTION_FAILED.
 */
export function openFrame(
  frame: Uint8Array,
  prefix: FramePrefix,
  messageKey: Uint8Array,
  headerDigest: Uint8Array,
  decrypt: FrameDecryptFunction,
): Uint8Array {
  const ciphertextEnd = FRAME_PREFIX_BYTES + prefix.ciphertextLength;
  return decrypt(
    messageKey,
    frameNonce(prefix.index),
    frame.subarray(FRAME_PREFIX_BYTES, ciphertextEnd),
    frame.subarray(ciphertextEnd, ciphertextEnd + FRAME_TAG_BYTES),
    frameAad(headerDigest, prefix.index, prefix.final),
  );
}
