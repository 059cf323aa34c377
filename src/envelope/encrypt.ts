import { randomBytes, zeroize } from "../crypto/index.ts";
import { ArborError, invalidArgument } from "../errors/index.ts";
import {
  FRAME_PREFIX_BYTES,
  FRAME_TAG_BYTES,
  MAX_FRAME_COUNT,
  MESSAGE_ID_BYTES,
} from "./format.ts";
import { frameWireLength, writeFrame } from "./frames.ts";
import { encodeHeaderPrefix } from "./header.ts";
import { computeCommitment, deriveMessageKeys, headerDigest } from "./keys.ts";
import {
  type EnvelopeEncryptParams,
  type ValidatedEncryptParams,
  validateEncryptParams,
} from "./params.ts";

/**
 * Encryption state of one message: the serialised header and the message key. It derives its
 * keys in the constructor and keeps no reference to the caller's data key. Call `dispose` when
 * done, which zeroes the message key; the object cannot encrypt afterwards.
 */
export class EnvelopeWriter {
  readonly header: Uint8Array;
  readonly frameSize: number;
  readonly #headerDigest: Uint8Array;
  #messageKey: Uint8Array | undefined;
  #nextIndex = 0;
  #finished = false;

  constructor(params: ValidatedEncryptParams, messageId: Uint8Array) {
    const { messageKey, commitmentKey } = deriveMessageKeys(params.dataKey, messageId);
    const prefix = encodeHeaderPrefix({ ...params, messageId });
    const commitment = computeCommitment(commitmentKey, prefix);
    zeroize(commitmentKey);

    this.header = new Uint8Array(prefix.length + commitment.length);
    this.header.set(prefix, 0);
    this.header.set(commitment, prefix.length);
    this.frameSize = params.frameSize;
    this.#headerDigest = headerDigest(this.header);
    this.#messageKey = messageKey;
  }

  /**
   * Encrypts the next frame into `target` at `offset` and returns the bytes written. A non-final
   * frame must contain exactly `frameSize` bytes and the final frame fewer. The message key is
   * zeroed after the final frame.
   */
  writeFrameInto(
    target: Uint8Array,
    offset: number,
    plaintext: Uint8Array,
    final: boolean,
  ): number {
    const messageKey = this.#messageKey;
    if (messageKey === undefined || this.#finished) {
      throw new Error("EnvelopeWriter used after its final frame or after dispose");
    }
    if (final ? plaintext.length >= this.frameSize : plaintext.length !== this.frameSize) {
      throw new Error(
        `frame of ${plaintext.length} bytes does not fit frame size ${this.frameSize}`,
      );
    }
    if (this.#nextIndex >= MAX_FRAME_COUNT || (!final && this.#nextIndex === MAX_FRAME_COUNT - 1)) {
      // NOTE: reaching this takes 2^32 frames (64 GiB at the minimum frame size); no test does.
      throw new ArborError(
        "PAYLOAD_TOO_LARGE",
        `the plaintext needs more than 2^32 frames of ${this.frameSize} bytes: use a larger frameSize`,
        { parameter: "frameSize", value: this.frameSize },
      );
    }

    const written = writeFrame(
      target,
      offset,
      messageKey,
      this.#headerDigest,
      this.#nextIndex,
      final,
      plaintext,
    );
    this.#nextIndex += 1;
    if (final) {
      this.#finished = true;
      this.dispose();
    }
    return written;
  }

  /** Encrypts the next frame into a new buffer. */
  sealFrame(plaintext: Uint8Array, final: boolean): Uint8Array {
    const frame = new Uint8Array(frameWireLength(plaintext.length));
    this.writeFrameInto(frame, 0, plaintext, final);
    return frame;
  }

  dispose(): void {
    zeroize(this.#messageKey);
    this.#messageKey = undefined;
  }
}

/**
 * Encrypts `plaintext` in memory into a binary envelope (format v1) under a fresh random
 * message id. Throws UNSUPPORTED_FIELD for unknown parameters (such as `nonce` or `iv`) and
 * INVALID_ARGUMENT for invalid ones. The caller keeps ownership of `params.dataKey` and zeroes it.
 */
export function encryptEnvelope(params: EnvelopeEncryptParams, plaintext: Uint8Array): Uint8Array {
  const validated = validateEncryptParams(params);
  requirePlaintext(plaintext);
  const messageId = randomBytes(MESSAGE_ID_BYTES);
  return encryptValidated(validated, plaintext, messageId);
}

/**
 * Like {@link encryptEnvelope} with a caller-chosen message id, for the published test vector
 * only. A repeated message id with the same data key repeats the message key and therefore
 * every frame nonce, so this must never be reachable from the package index, HTTP or the CLI.
 */
export function encryptEnvelopeWithMessageIdForTestVector(
  params: EnvelopeEncryptParams,
  plaintext: Uint8Array,
  messageId: Uint8Array,
): Uint8Array {
  const validated = validateEncryptParams(params);
  requirePlaintext(plaintext);
  if (!(messageId instanceof Uint8Array) || messageId.length !== MESSAGE_ID_BYTES) {
    throw invalidArgument("messageId", "wrong length", "a message id is 32 bytes");
  }
  return encryptValidated(validated, plaintext, messageId);
}

function encryptValidated(
  params: ValidatedEncryptParams,
  plaintext: Uint8Array,
  messageId: Uint8Array,
): Uint8Array {
  const writer = new EnvelopeWriter(params, messageId);
  try {
    const frameSize = writer.frameSize;
    const fullFrames = Math.floor(plaintext.length / frameSize);
    const frameOverhead = FRAME_PREFIX_BYTES + FRAME_TAG_BYTES;
    const out = new Uint8Array(
      writer.header.length + (fullFrames + 1) * frameOverhead + plaintext.length,
    );
    out.set(writer.header, 0);

    let offset = writer.header.length;
    for (let index = 0; index < fullFrames; index += 1) {
      const chunk = plaintext.subarray(index * frameSize, (index + 1) * frameSize);
      offset += writer.writeFrameInto(out, offset, chunk, false);
    }
    // The final frame contains the remainder, which is empty when the length is a multiple.
    writer.writeFrameInto(out, offset, plaintext.subarray(fullFrames * frameSize), true);
    return out;
  } finally {
    writer.dispose();
  }
}

function requirePlaintext(plaintext: unknown): asserts plaintext is Uint8Array {
  if (!(plaintext instanceof Uint8Array)) {
    throw invalidArgument("plaintext", typeof plaintext, "plaintext must be a Uint8Array");
  }
}
