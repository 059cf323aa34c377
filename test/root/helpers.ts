import assert from "node:assert/strict";

import { combine } from "shamir-secret-sharing";

import { aesGcmOpen, encodeLengthPrefixed } from "../../src/crypto/index.ts";
import { ArborError, type ErrorCode } from "../../src/errors/index.ts";
import { createSealedRoot, type SealedRootDeps } from "../../src/root/sealed-root.ts";
import type { SealedRootProvider } from "../../src/root/types.ts";
import { decodeUnsealShare } from "../../src/root/unseal-shares.ts";
import { FakeClock } from "../helpers/clock.ts";
import { MemorySealedRootStore } from "./memory-store.ts";

export interface InitializedRoot {
  root: SealedRootProvider;
  store: MemorySealedRootStore;
  clock: FakeClock;
  /** The decoded shares, in the order initialize returned them. */
  shares: Uint8Array[];
  threshold: number;
}

export async function initializedRoot(
  options: Partial<Omit<SealedRootDeps, "store" | "clock">> & {
    shares?: number;
    threshold?: number;
  } = {},
): Promise<InitializedRoot> {
  const { shares: shareCount, threshold: thresholdOption, ...deps } = options;
  const store = new MemorySealedRootStore();
  const clock = new FakeClock();
  const root = await createSealedRoot({ store, clock, ...deps });
  const result = await root.initialize({ shares: shareCount, threshold: thresholdOption });
  return {
    root,
    store,
    clock,
    shares: result.shares.map(decodeUnsealShare),
    threshold: result.threshold,
  };
}

/** Runs a whole ceremony with the given shares and asserts that the last one unseals. */
export async function unsealWith(root: SealedRootProvider, shares: Uint8Array[]): Promise<void> {
  const { nonce } = root.beginUnseal();
  let unsealed = false;
  for (const share of shares) {
    ({ unsealed } = await root.submit(nonce, share));
  }
  assert.equal(unsealed, true, "the ceremony should have unsealed the root");
}

/** Rebuilds the unseal key from shares outside the provider, as an attacker holding them could. */
export function recoverUnsealKey(shares: Uint8Array[]): Promise<Uint8Array> {
  return combine(shares);
}

/** Opens a stored root version with the documented format, without using the provider. */
export function openStoredRootKey(
  store: MemorySealedRootStore,
  unsealKey: Uint8Array,
  version: number,
): Uint8Array {
  const stored = store.snapshot().versions.find((v) => v.version === version);
  assert.ok(stored, `root version ${version} should be stored`);
  return aesGcmOpen(
    unsealKey,
    stored.sealedKey,
    encodeLengthPrefixed("arbor/sealed-root/v1", version),
  );
}

/** Asserts that a promise rejects (or a function throws) with the ArborError code and message. */
export async function assertArborError(
  action: Promise<unknown> | (() => unknown),
  code: ErrorCode,
  message?: RegExp,
): Promise<ArborError> {
  let caught: unknown;
  try {
    await (typeof action === "function" ? action() : action);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ArborError, `expected ArborError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, `unexpected code with message: ${caught.message}`);
  if (message) assert.match(caught.message, message);
  return caught;
}

export function containsBytes(haystack: Uint8Array, needle: Uint8Array): boolean {
  if (needle.length === 0) return true;
  return Buffer.from(haystack).indexOf(Buffer.from(needle)) !== -1;
}

export function isAllZero(bytes: Uint8Array): boolean {
  return bytes.every((byte) => byte === 0);
}

/**
 * Records the contents of every Uint8Array that is zero-filled while `action` runs, by wrapping
 * `Uint8Array.prototype.fill` (what `zeroize` calls). It shows which secrets the code zeroed
 * without exposing the provider's internal buffers.
 */
export async function recordZeroedBuffers(action: () => unknown): Promise<Uint8Array[]> {
  const zeroed: Uint8Array[] = [];
  // The original is only ever called with an explicit `this` below, and restored afterwards.
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const original = Uint8Array.prototype.fill;
  Uint8Array.prototype.fill = function (
    this: Uint8Array,
    value: number,
    start?: number,
    end?: number,
  ): Uint8Array {
    if (value === 0 && start === undefined && end === undefined) zeroed.push(Uint8Array.from(this));
    return original.call(this, value, start, end);
  };
  try {
    await action();
  } finally {
    Uint8Array.prototype.fill = original;
  }
  return zeroed;
}

export function includesBytes(list: Uint8Array[], wanted: Uint8Array): boolean {
  return list.some((item) => Buffer.from(item).equals(Buffer.from(wanted)));
}

/** Copy of a share with one byte of its y values flipped; its x coordinate stays the same. */
export function tamperShare(share: Uint8Array): Uint8Array {
  const copy = Uint8Array.from(share);
  copy[0] = (copy[0] ?? 0) ^ 0x01;
  return copy;
}
