/** Chunks shorter than this are copied into a shared block instead of being queued on their own. */
const COALESCE_BELOW_BYTES = 4096;
/** Size of the blocks that small chunks are copied into. */
const BLOCK_BYTES = 64 * 1024;

/**
 * FIFO of bytes for the streams. Memory and work stay linear in the bytes queued, whatever the
 * write sizes:
 * - chunks of 4 KiB or more are queued by reference, so a reader that takes bytes inside one
 *   chunk gets a view without a copy;
 * - smaller chunks are copied into 64 KiB blocks, so a stream of 1-byte writes does not turn
 *   into one queued object per byte;
 * - consumed chunks are skipped with a head index rather than `Array.prototype.shift`.
 * Views returned by `peek` and `take` stay valid: bytes are only ever appended to a block.
 */
export class ByteQueue {
  #chunks: Uint8Array[] = [];
  #head = 0;
  #length = 0;
  /** Block that small chunks are appended to; the last queued chunk ends at `#blockUsed`. */
  #block: Uint8Array | undefined;
  #blockUsed = 0;

  get length(): number {
    return this.#length;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#length += chunk.length;

    if (chunk.length >= COALESCE_BELOW_BYTES) {
      this.#chunks.push(chunk);
      this.#block = undefined;
      return;
    }

    const last = this.#lastChunk();
    const block = this.#block;
    if (
      block !== undefined &&
      last !== undefined &&
      last.buffer === block.buffer &&
      last.byteOffset + last.length === block.byteOffset + this.#blockUsed &&
      this.#blockUsed + chunk.length <= block.length
    ) {
      block.set(chunk, this.#blockUsed);
      const start = last.byteOffset - block.byteOffset;
      this.#blockUsed += chunk.length;
      this.#chunks[this.#chunks.length - 1] = block.subarray(start, this.#blockUsed);
      return;
    }

    const fresh = new Uint8Array(BLOCK_BYTES);
    fresh.set(chunk, 0);
    this.#block = fresh;
    this.#blockUsed = chunk.length;
    this.#chunks.push(fresh.subarray(0, chunk.length));
  }

  /** Returns the first `length` bytes without consuming them: a view if they are contiguous. */
  peek(length: number): Uint8Array {
    this.#requireAvailable(length);
    const first = this.#chunks[this.#head];
    if (first === undefined || first.length >= length) {
      return first === undefined ? new Uint8Array(0) : first.subarray(0, length);
    }

    const out = new Uint8Array(length);
    let filled = 0;
    for (let index = this.#head; filled < length; index += 1) {
      const part = this.#chunks[index]!.subarray(0, length - filled);
      out.set(part, filled);
      filled += part.length;
    }
    return out;
  }

  /** Removes and returns the first `length` bytes. */
  take(length: number): Uint8Array {
    const out = this.peek(length);
    let remaining = length;
    while (remaining > 0) {
      const first = this.#chunks[this.#head]!;
      if (first.length <= remaining) {
        remaining -= first.length;
        this.#head += 1;
      } else {
        this.#chunks[this.#head] = first.subarray(remaining);
        remaining = 0;
      }
    }
    this.#length -= length;
    this.#dropConsumed();
    return out;
  }

  /**
   * Copies each chunk queued by reference that uses less than half of its ArrayBuffer, so a
   * small remainder no longer keeps a large input chunk alive. The streams call it after each
   * write. A copy owns its whole buffer and is copied again only after half of it was consumed,
   * so the copying adds up to at most twice the bytes queued. The current block is skipped; it
   * is at most 64 KiB.
   */
  compact(): void {
    for (let index = this.#head; index < this.#chunks.length; index += 1) {
      const chunk = this.#chunks[index]!;
      if (chunk.buffer === this.#block?.buffer) continue;
      if (chunk.byteLength * 2 < chunk.buffer.byteLength) this.#chunks[index] = chunk.slice();
    }
  }

  clear(): void {
    this.#chunks = [];
    this.#head = 0;
    this.#length = 0;
    this.#block = undefined;
    this.#blockUsed = 0;
  }

  #lastChunk(): Uint8Array | undefined {
    return this.#chunks.length > this.#head ? this.#chunks[this.#chunks.length - 1] : undefined;
  }

  #dropConsumed(): void {
    if (this.#head === this.#chunks.length) {
      this.#chunks = [];
      this.#head = 0;
    } else if (this.#head > 64 && this.#head * 2 > this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }

  #requireAvailable(length: number): void {
    if (!Number.isInteger(length) || length < 0 || length > this.#length) {
      throw new RangeError(`cannot read ${length} bytes: the queue contains ${this.#length}`);
    }
  }
}
