/** Overwrites each buffer with zeros. Use on plaintext key material as soon as it is no longer needed. */
export function zeroize(...buffers: ReadonlyArray<Uint8Array | null | undefined>): void {
  for (const buffer of buffers) buffer?.fill(0);
}

/**
 * Runs `use` with `secret` and zeroes the secret afterwards, whether `use` returns or throws.
 * The caller must not keep a reference to `secret` beyond `use`.
 */
export async function withZeroed<T>(
  secret: Uint8Array,
  use: (secret: Uint8Array) => Promise<T> | T,
): Promise<T> {
  try {
    return await use(secret);
  } finally {
    secret.fill(0);
  }
}
