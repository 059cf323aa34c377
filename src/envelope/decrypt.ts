import { zeroize } from "../crypto/index.ts";
import { decryptionFailed } from "../errors/index.ts";
import { ByteQueue } from "./byte-queue.ts";
import { malformedEnvelope } from "./cursor.ts";
import { FRAME_PREFIX_BYTES, FRAME_TAG_BYTES, MAX_HEADER_BYTES } from "./format.ts";
import {
  defaultFrameDecrypt,
  type FrameDecryptFunction,
  openFrame,
  readFramePrefix,
} from "./frames.ts";
import { copyHeader, type EnvelopeHeader, readHeader, requireBytes } from "./header.ts";
import { headerDigest, verifyCommitmentAndDeriveMessageKey } from "./keys.ts";

/**
 * Returns the 32-byte plaintext data key for a header, normally by unwrapping
 * `header.wrappedDataKey` with service key `header.keyId` at `header.keyVersion`. The header is
 * not yet authenticated when this runs. The envelope code zeroes the returned buffer after use,
 * so return a fresh copy, never a cached buffer. Errors it throws propagate unchanged, so an
 * unwrap failure should be thrown as DECRYPTION_FAILED and an outage as its own code.
 */
export type DataKeyResolver = (header: EnvelopeHeader) => Promise<Uint8Array> | Uint8Array;

/** Result of an in-memory decryption; `header` is authenticated. */
export interface DecryptedEnvelope {
  plaintext: Uint8Array;
  header: EnvelopeHeader;
}

/** Internal options; the frame decrypt function is replaceable so tests can count its calls. */
export interface EnvelopeReaderOptions {
  decryptFrame?: FrameDecryptFunction;
  /** Called once the key commitment matched, before any frame is decrypted. */
  onHeaderVerified?: (header: EnvelopeHeader) => void;
}

type ReaderPhase = "header" | "resolving-key" | "frames" | "done" | "failed";

/**
 * Incremental decryptor shared by the in-memory and the streaming API. Beyond the chunk being
 * written, it buffers at most one frame (up to the 1 MiB maximum frame size plus 25 bytes) or one
 * header (up to 12398 bytes). It releases a frame's plaintext only after its tag verified.
 */
export class EnvelopeReader {
  readonly #queue = new ByteQueue();
  readonly #resolveDataKey: DataKeyResolver;
  readonly #decryptFrame: FrameDecryptFunction;
  readonly #onHeaderVerified: ((header: EnvelopeHeader) => void) | undefined;
  #phase: ReaderPhase = "header";
  #header: EnvelopeHeader | undefined;
  #headerDigest: Uint8Array | undefined;
  #messageKey: Uint8Array | undefined;
  #nextIndex = 0;
  #headerBytesNeeded = 1;

  constructor(resolveDataKey: DataKeyResolver, options: EnvelopeReaderOptions = {}) {
    this.#resolveDataKey = resolveDataKey;
    this.#decryptFrame = options.decryptFrame ?? defaultFrameDecrypt;
    this.#onHeaderVerified = options.onHeaderVerified;
  }

  /** Header, once its commitment verified. */
  get header(): EnvelopeHeader | undefined {
    return this.#phase === "frames" || this.#phase === "done" ? this.#header : undefined;
  }

  /** Bytes buffered while waiting for a complete header or frame. */
  get bufferedBytes(): number {
    return this.#queue.length;
  }

  /**
   * Appends ciphertext and passes the plaintext of each frame it completes to `emit`, in order,
   * as soon as that frame's tag verified. Any failure zeroes the keys and leaves the reader
   * failed; cryptographic and structural failures are DECRYPTION_FAILED, while errors of the
   * data key resolver propagate unchanged.
   */
  async write(chunk: Uint8Array, emit: (plaintext: Uint8Array) => void): Promise<void> {
    if (this.#phase === "failed") throw decryptionFailed(new Error("reader already failed"));
    if (this.#phase === "resolving-key")
      throw new Error("EnvelopeReader.write called concurrently");

    try {
      this.#queue.push(chunk);
      if (this.#phase === "header") await this.#readHeader();
      if (this.#phase === "frames") this.#readFrames(emit);
      if (this.#phase === "done" && this.#queue.length > 0) {
        throw malformedEnvelope("bytes follow the final frame");
      }
    } catch (error) {
      this.#fail();
      throw error;
    }
  }

  /** Checks that the input ended right after the final frame; a truncated envelope fails here. */
  end(): void {
    if (this.#phase !== "done") {
      this.#fail();
      throw malformedEnvelope("input ended before the final frame");
    }
  }

  /** Copies the unconsumed input into its own buffer; streams call it to bound memory. */
  compact(): void {
    this.#queue.compact();
  }

  /**
   * Zeroes the message key and drops buffered input; safe to call more than once. A reader
   * disposed before its final frame fails every later call.
   */
  dispose(): void {
    if (this.#phase !== "done") this.#phase = "failed";
    this.#releaseKey();
    this.#queue.clear();
  }

  async #readHeader(): Promise<void> {
    if (this.#queue.length < this.#headerBytesNeeded) return;

    const available = this.#queue.peek(Math.min(this.#queue.length, MAX_HEADER_BYTES));
    const result = readHeader(available);
    if (!result.complete) {
      this.#headerBytesNeeded = result.needed;
      return;
    }

    const { header, byteLength } = result.parsed;
    const headerBytes = this.#queue.take(byteLength).slice();
    this.#phase = "resolving-key";
    const dataKey = await this.#resolveDataKey(copyHeader(header));
    try {
      // A stream destroyed while the resolver ran has already disposed this reader.
      if (this.#phase !== "resolving-key") throw decryptionFailed(new Error("reader disposed"));
      if (!(dataKey instanceof Uint8Array)) {
        throw decryptionFailed(new Error("the data key resolver did not return a Uint8Array"));
      }
      // The commitment check is the only source of the message key, so it runs before any frame.
      this.#messageKey = verifyCommitmentAndDeriveMessageKey(
        dataKey,
        header.messageId,
        headerBytes.subarray(0, result.prefixLength),
        header.commitment,
      );
    } finally {
      if (dataKey instanceof Uint8Array) zeroize(dataKey);
    }

    this.#header = header;
    this.#headerDigest = headerDigest(headerBytes);
    this.#phase = "frames";
    this.#onHeaderVerified?.(copyHeader(header));
  }

  #readFrames(emit: (plaintext: Uint8Array) => void): void {
    const header = this.#header;
    const digest = this.#headerDigest;
    const messageKey = this.#messageKey;
    if (header === undefined || digest === undefined || messageKey === undefined) {
      throw new Error("EnvelopeReader reached the frames without a verified header");
    }

    while (this.#phase === "frames" && this.#queue.length >= FRAME_PREFIX_BYTES) {
      // The prefix is checked before the frame body is buffered, so a hostile length field
      // cannot make the reader wait for or hold more than one frame.
      const prefix = readFramePrefix(
        this.#queue.peek(FRAME_PREFIX_BYTES),
        this.#nextIndex,
        header.frameSize,
      );
      const frameLength = FRAME_PREFIX_BYTES + prefix.ciphertextLength + FRAME_TAG_BYTES;
      if (this.#queue.length < frameLength) break;

      const frame = this.#queue.take(frameLength);
      emit(openFrame(frame, prefix, messageKey, digest, this.#decryptFrame));
      this.#nextIndex += 1;
      if (prefix.final) {
        this.#phase = "done";
        this.#releaseKey();
      }
    }
  }

  #fail(): void {
    this.#phase = "failed";
    this.dispose();
  }

  #releaseKey(): void {
    zeroize(this.#messageKey);
    this.#messageKey = undefined;
  }
}

/**
 * Decrypts a whole binary envelope in memory. `unwrapDataKey` receives the unauthenticated
 * header and returns the data key, which this function zeroes after use. Returns the plaintext
 * and the authenticated header. Throws INVALID_ARGUMENT if `ciphertext` is not a Uint8Array,
 * DECRYPTION_FAILED for every cryptographic or structural failure, and whatever
 * `unwrapDataKey` throws.
 */
export async function decryptEnvelope(
  ciphertext: Uint8Array,
  unwrapDataKey: DataKeyResolver,
): Promise<DecryptedEnvelope> {
  return decryptEnvelopeWithOptions(ciphertext, unwrapDataKey, {});
}

/** {@link decryptEnvelope} with internal options; not exported from the package index. */
export async function decryptEnvelopeWithOptions(
  ciphertext: Uint8Array,
  unwrapDataKey: DataKeyResolver,
  options: EnvelopeReaderOptions,
): Promise<DecryptedEnvelope> {
  requireBytes(ciphertext);
  const reader = new EnvelopeReader(unwrapDataKey, options);
  const plaintexts: Uint8Array[] = [];
  try {
    await reader.write(ciphertext, (plaintext) => plaintexts.push(plaintext));
    reader.end();
    const header = reader.header;
    if (header === undefined) throw new Error("EnvelopeReader finished without a header");
    return { plaintext: concatBytes(plaintexts), header };
  } catch (error) {
    // Frames that verified before the failure are part of a rejected message: wipe them.
    zeroize(...plaintexts);
    throw error;
  } finally {
    reader.dispose();
  }
}

function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1 && parts[0] !== undefined) return parts[0];
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
