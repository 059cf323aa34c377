import { Transform, type TransformCallback } from "node:stream";

import { randomBytes } from "../crypto/index.ts";
import { ByteQueue } from "./byte-queue.ts";
import { type DataKeyResolver, EnvelopeReader } from "./decrypt.ts";
import { EnvelopeWriter } from "./encrypt.ts";
import { MESSAGE_ID_BYTES } from "./format.ts";
import type { EnvelopeHeader } from "./header.ts";
import { type EnvelopeEncryptParams, validateEncryptParams } from "./params.ts";

/**
 * Transform that turns plaintext bytes into one binary envelope. It keeps fewer than
 * `frameSize` plaintext bytes between writes, so memory stays constant for any input length.
 */
export class EnvelopeEncryptStream extends Transform {
  readonly #writer: EnvelopeWriter;
  readonly #queue = new ByteQueue();
  #headerSent = false;

  /** Validates `params` and derives the keys now; the caller may zero `params.dataKey` after. */
  constructor(params: EnvelopeEncryptParams) {
    super();
    this.#writer = new EnvelopeWriter(validateEncryptParams(params), randomBytes(MESSAGE_ID_BYTES));
  }

  /** Plaintext bytes waiting for a full frame. */
  get bufferedBytes(): number {
    return this.#queue.length;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.#sendHeader();
      this.#queue.push(chunk);
      const frameSize = this.#writer.frameSize;
      // A full frame can go out as non-final at once: if the input ends exactly here, the
      // final frame is the empty one written by _flush.
      while (this.#queue.length >= frameSize) {
        this.push(this.#writer.sealFrame(this.#queue.take(frameSize), false));
      }
      this.#queue.compact();
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.#sendHeader();
      this.push(this.#writer.sealFrame(this.#queue.take(this.#queue.length), true));
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#writer.dispose();
    this.#queue.clear();
    callback(error);
  }

  #sendHeader(): void {
    if (this.#headerSent) return;
    this.#headerSent = true;
    this.push(this.#writer.header);
  }
}

/**
 * Transform that turns one binary envelope back into plaintext. It emits a frame's plaintext
 * only after that frame's tag verified, but truncation is detected only at the end of input:
 * treat the output as untrusted until the stream finishes without an error. It emits `header`
 * with the authenticated header once the key commitment matched, before any plaintext.
 */
export class EnvelopeDecryptStream extends Transform {
  readonly #reader: EnvelopeReader;

  constructor(getDataKey: DataKeyResolver) {
    super();
    this.#reader = new EnvelopeReader(getDataKey, {
      onHeaderVerified: (header) => this.emit("header", header),
    });
  }

  /** The authenticated header, once the key commitment matched; undefined before. */
  get header(): EnvelopeHeader | undefined {
    return this.#reader.header;
  }

  /** Ciphertext bytes waiting for a complete header or frame. */
  get bufferedBytes(): number {
    return this.#reader.bufferedBytes;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#reader
      .write(chunk, (plaintext) => this.push(plaintext))
      .then(
        () => {
          this.#reader.compact();
          callback();
        },
        (error: unknown) => callback(error as Error),
      );
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.#reader.end();
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#reader.dispose();
    callback(error);
  }
}

/**
 * Creates a Transform that encrypts its input into one binary envelope. Parameters are
 * validated and keys derived synchronously, so invalid input (including a `nonce` or `iv`
 * field) throws here, and the caller may zero `params.dataKey` as soon as this returns.
 */
export function createEncryptStream(params: EnvelopeEncryptParams): EnvelopeEncryptStream {
  return new EnvelopeEncryptStream(params);
}

/**
 * Creates a Transform that decrypts one binary envelope. `getDataKey` receives the
 * unauthenticated header and returns a fresh data key buffer, which the stream zeroes.
 */
export function createDecryptStream(getDataKey: DataKeyResolver): EnvelopeDecryptStream {
  return new EnvelopeDecryptStream(getDataKey);
}
