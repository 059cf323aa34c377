/**
 * Copies `chunks` into one new array that owns its memory, then zeroes the chunks. Node returns
 * cipher output in Buffers that may share a pooled allocation, so plaintext key material must not
 * be handed out as a view into them or left behind in them.
 */
export function concatAndZeroChunks(chunks: readonly Uint8Array[]): Uint8Array {
  const total = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  zeroChunks(chunks);
  return out;
}

export function zeroChunks(chunks: readonly Uint8Array[]): void {
  for (const chunk of chunks) chunk.fill(0);
}
