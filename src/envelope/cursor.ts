import { decryptionFailed, type ArborError } from "../errors/index.ts";

/**
 * Signals that the input ends before a complete field; `needed` is the total input length
 * required. Parsers catch it internally; it never reaches a caller.
 */
export class IncompleteInput extends Error {
  constructor(readonly needed: number) {
    super(`input ends early: ${needed} bytes needed`);
  }
}

/**
 * Returns the uniform DECRYPTION_FAILED error for a structurally invalid envelope. The reason is
 * kept only as the error's cause, for server logs, so a caller cannot tell which check failed.
 */
export function malformedEnvelope(reason: string): ArborError {
  return decryptionFailed(new Error(`malformed envelope: ${reason}`));
}

/** Big-endian reader over a byte array that throws {@link IncompleteInput} past the end. */
export class ByteCursor {
  #offset = 0;
  readonly #view: DataView;

  constructor(readonly bytes: Uint8Array) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get offset(): number {
    return this.#offset;
  }

  readUint8(): number {
    this.#require(1);
    const value = this.#view.getUint8(this.#offset);
    this.#offset += 1;
    return value;
  }

  readUint16(): number {
    this.#require(2);
    const value = this.#view.getUint16(this.#offset, false);
    this.#offset += 2;
    return value;
  }

  readUint32(): number {
    this.#require(4);
    const value = this.#view.getUint32(this.#offset, false);
    this.#offset += 4;
    return value;
  }

  /** Returns a view (not a copy) of the next `length` bytes. */
  readBytes(length: number): Uint8Array {
    this.#require(length);
    const value = this.bytes.subarray(this.#offset, this.#offset + length);
    this.#offset += length;
    return value;
  }

  #require(length: number): void {
    if (this.#offset + length > this.bytes.length) throw new IncompleteInput(this.#offset + length);
  }
}

/** Big-endian writer into a growable list of parts, for building headers. */
export class ByteWriter {
  readonly #parts: Uint8Array[] = [];
  #length = 0;

  writeUint8(value: number): void {
    this.writeBytes(Uint8Array.of(value));
  }

  writeUint16(value: number): void {
    const bytes = new Uint8Array(2);
    new DataView(bytes.buffer).setUint16(0, value, false);
    this.writeBytes(bytes);
  }

  writeUint32(value: number): void {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, value, false);
    this.writeBytes(bytes);
  }

  writeBytes(bytes: Uint8Array): void {
    this.#parts.push(bytes);
    this.#length += bytes.length;
  }

  toBytes(): Uint8Array {
    const out = new Uint8Array(this.#length);
    let offset = 0;
    for (const part of this.#parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }
}
