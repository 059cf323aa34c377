import { createHash, timingSafeEqual } from "node:crypto";

/**
 * Compares two byte strings in time that depends only on their lengths, not on where they differ.
 * Inputs of different lengths are hashed first so the comparison itself stays constant-time and
 * the length difference alone is what a timing observer could learn.
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length === b.length) return timingSafeEqual(a, b);

  const digestA = createHash("sha256").update(a).digest();
  const digestB = createHash("sha256").update(b).digest();
  // The digests are compared only so both branches do comparable work; the answer is false.
  timingSafeEqual(digestA, digestB);
  return false;
}
