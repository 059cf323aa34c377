import assert from "node:assert/strict";
import { randomBytes as nodeRandomBytes, randomInt } from "node:crypto";
import { inspect } from "node:util";

import {
  aesGcmOpen,
  aesGcmSeal,
  encodeLengthPrefixed,
  newOpaqueId,
} from "../../src/crypto/index.ts";
import { DECRYPTION_FAILED_MESSAGE, isArborError } from "../../src/errors/index.ts";
import type { EnvelopeEncryptParams, EnvelopeHeader } from "../../src/envelope/index.ts";

export function randomBytes(length: number): Uint8Array {
  return new Uint8Array(nodeRandomBytes(length));
}

/**
 * Stand-in for a service key version. It wraps data keys with AES-256-GCM under an AAD that
 * binds the key id and version, as the key hierarchy does. A header whose key id, version or
 * wrapped key was changed therefore fails to unwrap.
 */
export class TestServiceKey {
  readonly keyId = newOpaqueId("key");
  readonly keyVersion = 3;
  readonly #material = randomBytes(32);

  wrap(dataKey: Uint8Array): Uint8Array {
    return aesGcmSeal(this.#material, dataKey, this.#aad(this.keyId, this.keyVersion));
  }

  /** Unwraps using the ids from the header, the way a server would. */
  readonly unwrap = (header: EnvelopeHeader): Uint8Array =>
    aesGcmOpen(this.#material, header.wrappedDataKey, this.#aad(header.keyId, header.keyVersion));

  #aad(keyId: string, keyVersion: number): Uint8Array {
    return encodeLengthPrefixed("test/data-key", keyId, keyVersion);
  }
}

/** Creates a fresh data key and returns encrypt parameters with its wrapped form. */
export function newMessageParams(
  serviceKey: TestServiceKey,
  overrides: Partial<EnvelopeEncryptParams> = {},
): EnvelopeEncryptParams & { dataKey: Uint8Array } {
  const dataKey = randomBytes(32);
  return {
    dataKey,
    keyId: serviceKey.keyId,
    keyVersion: serviceKey.keyVersion,
    wrappedDataKey: serviceKey.wrap(dataKey),
    context: { tenant: "acme", service: "billing" },
    ...overrides,
  };
}

const CONTEXT_ALPHABET = [..."abcxyzABC019-_./:é中🔑 "];

function randomString(minLength: number, maxLength: number): string {
  let out = "";
  const length = randomInt(minLength, maxLength + 1);
  for (let index = 0; index < length; index += 1) {
    out += CONTEXT_ALPHABET[randomInt(CONTEXT_ALPHABET.length)];
  }
  return out;
}

/** Returns a random context of 0 to 8 entries with non-ASCII keys and values, some empty. */
export function randomContext(): Record<string, string> {
  const context: Record<string, string> = {};
  const count = randomInt(0, 9);
  for (let index = 0; index < count; index += 1) {
    context[randomString(1, 12)] = randomString(0, 20);
  }
  return context;
}

/** Asserts that `action` rejects with the uniform decryption failure. */
export async function assertDecryptionFailed(action: () => unknown, label: string): Promise<void> {
  let caught: unknown;
  try {
    await action();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught !== undefined, `${label}: expected DECRYPTION_FAILED, but decryption succeeded`);
  assert.ok(isArborError(caught), `${label}: expected an ArborError, got ${inspect(caught)}`);
  assert.equal(caught.code, "DECRYPTION_FAILED", `${label}: wrong code`);
  assert.equal(caught.message, DECRYPTION_FAILED_MESSAGE, `${label}: wrong message`);
}

export interface ByteRange {
  name: string;
  start: number;
  end: number;
}

/** Field and frame positions of an envelope. */
export interface EnvelopeLayout {
  headerFields: ByteRange[];
  headerLength: number;
  frames: ByteRange[];
}

/**
 * Walks an envelope by the byte layout in docs/envelope-format.md, independently of the code
 * under test, so tampering tests can target each field and frame by position.
 */
export function layoutOf(envelope: Uint8Array): EnvelopeLayout {
  const view = new DataView(envelope.buffer, envelope.byteOffset, envelope.byteLength);
  const headerFields: ByteRange[] = [];
  let offset = 0;
  const field = (name: string, length: number): number => {
    headerFields.push({ name, start: offset, end: offset + length });
    offset += length;
    return offset - length;
  };

  field("magic", 4);
  field("format version", 1);
  field("key id length", 1);
  field("key id", envelope[5]!);
  field("key version", 4);
  field("message id", 32);
  const contextStart = field("context entry count", 2);
  const count = view.getUint16(contextStart, false);
  for (let entry = 0; entry < count; entry += 1) {
    const keyLength = view.getUint16(field(`context key ${entry} length`, 2), false);
    field(`context key ${entry}`, keyLength);
    const valueLength = view.getUint16(field(`context value ${entry} length`, 2), false);
    if (valueLength > 0) field(`context value ${entry}`, valueLength);
  }
  const wrappedLength = view.getUint16(field("wrapped data key length", 2), false);
  field("wrapped data key", wrappedLength);
  field("frame size", 4);
  field("commitment", 32);
  const headerLength = offset;

  const frames: ByteRange[] = [];
  while (offset < envelope.length) {
    const ciphertextLength = view.getUint32(offset + 5, false);
    const end = offset + 9 + ciphertextLength + 16;
    frames.push({ name: `frame ${frames.length}`, start: offset, end });
    offset = end;
  }
  return { headerFields, headerLength, frames };
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

export function flipByte(bytes: Uint8Array, position: number): Uint8Array {
  const copy = bytes.slice();
  copy[position]! ^= 0x01;
  return copy;
}
