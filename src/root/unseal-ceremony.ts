import { constantTimeEqual, randomBytes, zeroize } from "../crypto/index.ts";
import type { Ceremony } from "./types.ts";
import { shareXCoordinate, validateShare } from "./unseal-shares.ts";

const NONCE_BYTES = 16;
const textEncoder = new TextEncoder();

/**
 * One unseal ceremony: a random nonce and the shares submitted under it. The ceremony keeps its own
 * copies of the shares, so callers may zero theirs, and zeroes the copies when it is discarded or
 * hands them over for combining.
 */
export class UnsealCeremony {
  /** Base64url of 16 random bytes. */
  readonly nonce: string;
  readonly threshold: number;
  /** Clock time in milliseconds of the ceremony's start or its last accepted share. */
  lastActivityAt: number;

  #shares: Uint8Array[] = [];
  // X coordinates are kept apart from the shares: they count progress and catch duplicates even
  // after the shares were handed over for combining.
  readonly #submittedX = new Set<number>();

  constructor(threshold: number, now: number) {
    this.nonce = Buffer.from(randomBytes(NONCE_BYTES)).toString("base64url");
    this.threshold = threshold;
    this.lastActivityAt = now;
  }

  get progress(): number {
    return this.#submittedX.size;
  }

  get complete(): boolean {
    return this.#submittedX.size >= this.threshold;
  }

  /** Compares a submitted nonce with this ceremony's in constant time. */
  matches(nonce: string): boolean {
    return constantTimeEqual(textEncoder.encode(nonce), textEncoder.encode(this.nonce));
  }

  /** Validates the share and stores a copy; throws INVALID_SHARE and leaves the ceremony as it was. */
  accept(share: Uint8Array, now: number): void {
    validateShare(share, this.#submittedX);
    this.#shares.push(Uint8Array.from(share));
    this.#submittedX.add(shareXCoordinate(share));
    this.lastActivityAt = now;
  }

  /** Hands the stored shares to the caller, who must zero them; the ceremony keeps its progress. */
  takeShares(): Uint8Array[] {
    const shares = this.#shares;
    this.#shares = [];
    return shares;
  }

  discard(): void {
    zeroize(...this.#shares);
    this.#shares = [];
  }

  describe(): Ceremony {
    return { nonce: this.nonce, threshold: this.threshold, progress: this.progress };
  }
}
