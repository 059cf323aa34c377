import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { ArborError } from "../../src/errors/index.ts";
import {
  encryptEnvelope,
  MAX_HEADER_BYTES,
  parseEnvelopeHeader,
} from "../../src/envelope/index.ts";
import {
  assertDecryptionFailed,
  concat,
  layoutOf,
  newMessageParams,
  randomBytes,
  TestServiceKey,
} from "./helpers.ts";

const serviceKey = new TestServiceKey();

const u8 = (value: number): Uint8Array => Uint8Array.of(value);
const u16 = (value: number): Uint8Array => Uint8Array.of(value >> 8, value & 0xff);
const u32 = (value: number): Uint8Array => {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value, false);
  return bytes;
};
const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

interface RawHeader {
  magic: Uint8Array;
  version: Uint8Array;
  keyId: Uint8Array;
  keyVersion: Uint8Array;
  messageId: Uint8Array;
  context: Uint8Array;
  wrappedDataKey: Uint8Array;
  frameSize: Uint8Array;
  commitment: Uint8Array;
}

/** Builds a header field by field from the documented layout, so each field can be made hostile. */
function rawHeader(overrides: Partial<RawHeader> = {}): Uint8Array {
  const keyId = utf8("key_abcdefghijklmnopqrstuvwxyz");
  const fields: RawHeader = {
    magic: utf8("ARBE"),
    version: u8(1),
    keyId: concat(u8(keyId.length), keyId),
    keyVersion: u32(1),
    messageId: new Uint8Array(32),
    context: concat(u16(1), u16(1), utf8("a"), u16(1), utf8("b")),
    wrappedDataKey: concat(u16(3), Uint8Array.of(1, 2, 3)),
    frameSize: u32(1024),
    commitment: new Uint8Array(32),
    ...overrides,
  };
  return concat(...Object.values(fields));
}

function contextOf(...entries: Array<[Uint8Array, Uint8Array]>): Uint8Array {
  return concat(
    u16(entries.length),
    ...entries.flatMap(([key, value]) => [u16(key.length), key, u16(value.length), value]),
  );
}

function causeOf(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    return error instanceof Error && error.cause instanceof Error ? error.cause.message : "";
  }
  return "";
}

describe("parseEnvelopeHeader", () => {
  it("returns the header fields and length", () => {
    const params = newMessageParams(serviceKey, { context: { tenant: "acme" }, frameSize: 4096 });
    const envelope = encryptEnvelope(params, randomBytes(5000));

    const { header, byteLength } = parseEnvelopeHeader(envelope);

    assert.equal(byteLength, layoutOf(envelope).headerLength);
    assert.equal(header.formatVersion, 1);
    assert.equal(header.keyId, serviceKey.keyId);
    assert.equal(header.keyVersion, serviceKey.keyVersion);
    assert.equal(header.messageId.length, 32);
    assert.deepEqual({ ...header.context }, { tenant: "acme" });
    assert.deepEqual(header.wrappedDataKey, params.wrappedDataKey);
    assert.equal(header.frameSize, 4096);
    assert.equal(header.commitment.length, 32);
  });

  it("parses a header without frames", () => {
    const { header, byteLength } = parseEnvelopeHeader(rawHeader());

    assert.equal(byteLength, rawHeader().length);
    assert.deepEqual({ ...header.context }, { a: "b" });
    assert.ok(Object.isFrozen(header));
    assert.ok(Object.isFrozen(header.context));
  });

  it("returns copies, not views of the input", () => {
    const bytes = rawHeader();
    const { header } = parseEnvelopeHeader(bytes);

    bytes.fill(0xff);

    assert.deepEqual(header.wrappedDataKey, Uint8Array.of(1, 2, 3));
    assert.deepEqual(header.commitment, new Uint8Array(32));
  });

  it("keeps a leading byte order mark in a context value", () => {
    const bom = Uint8Array.of(0xef, 0xbb, 0xbf);
    const { header } = parseEnvelopeHeader(
      rawHeader({ context: contextOf([utf8("a"), concat(bom, utf8("x"))]) }),
    );

    assert.equal(header.context.a, "\ufeffx");
  });

  it("rejects a non-binary argument", () => {
    assert.throws(
      () => parseEnvelopeHeader("arbor:v1:AAAA" as unknown as Uint8Array),
      (error: unknown) =>
        error instanceof ArborError &&
        error.code === "INVALID_ARGUMENT" &&
        error.detail.parameter === "ciphertext",
    );
  });

  it("rejects every incomplete header", async () => {
    const bytes = rawHeader();
    for (let length = 0; length < bytes.length; length += 1) {
      await assertDecryptionFailed(
        () => parseEnvelopeHeader(bytes.subarray(0, length)),
        `${length} bytes`,
      );
    }
  });

  const keyId = utf8("key_abcdefghijklmnopqrstuvwxyz");
  const hostile: Record<string, Partial<RawHeader>> = {
    "wrong magic": { magic: utf8("ARBF") },
    "format version 0": { version: u8(0) },
    "format version 2": { version: u8(2) },
    "key id length 29": { keyId: concat(u8(29), keyId.subarray(0, 29)) },
    "key id length 255": { keyId: concat(u8(255), new Uint8Array(255).fill(0x61)) },
    "key id with another prefix": { keyId: concat(u8(30), utf8("svc_abcdefghijklmnopqrstuvwxyz")) },
    "key id with a digit 1": { keyId: concat(u8(30), utf8("key_1bcdefghijklmnopqrstuvwxyz")) },
    "key version 0": { keyVersion: u32(0) },
    "65 context entries": { context: u16(65) },
    "context count 65535": { context: u16(0xffff) },
    "empty context key": { context: contextOf([new Uint8Array(0), utf8("x")]) },
    "129-byte context key": { context: contextOf([new Uint8Array(129).fill(0x61), utf8("x")]) },
    "1025-byte context value": { context: contextOf([utf8("a"), new Uint8Array(1025).fill(0x61)]) },
    "context value length 65535": { context: concat(u16(1), u16(1), utf8("a"), u16(0xffff)) },
    "unsorted context keys": { context: contextOf([utf8("b"), utf8("1")], [utf8("a"), utf8("2")]) },
    "duplicate context keys": {
      context: contextOf([utf8("a"), utf8("1")], [utf8("a"), utf8("2")]),
    },
    "invalid UTF-8 in a context key": { context: contextOf([Uint8Array.of(0xc3), utf8("x")]) },
    "overlong UTF-8 in a context value": {
      context: contextOf([utf8("a"), Uint8Array.of(0xc0, 0xaf)]),
    },
    "encoded surrogate in a context value": {
      context: contextOf([utf8("a"), Uint8Array.of(0xed, 0xa0, 0x80)]),
    },
    "context over 8192 bytes": {
      context: contextOf(
        ...Array.from({ length: 8 }, (_, index): [Uint8Array, Uint8Array] => [
          utf8(`${index}`),
          new Uint8Array(1024).fill(0x76),
        ]),
      ),
    },
    "empty wrapped data key": { wrappedDataKey: u16(0) },
    "wrapped data key length 4097": { wrappedDataKey: concat(u16(4097), new Uint8Array(4097)) },
    "wrapped data key length 65535": { wrappedDataKey: u16(0xffff) },
    "frame size 0": { frameSize: u32(0) },
    "frame size 15": { frameSize: u32(15) },
    "frame size 1 MiB + 1": { frameSize: u32(1048577) },
    "frame size 2^32 - 1": { frameSize: u32(0xffffffff) },
  };
  for (const [name, overrides] of Object.entries(hostile)) {
    it(`rejects ${name}`, async () => {
      const bytes = rawHeader(overrides);
      await assertDecryptionFailed(() => parseEnvelopeHeader(bytes), name);

      // The field itself must be rejected, not the input for being short: a stream would
      // otherwise keep waiting for bytes that a hostile length field announced.
      const cause = causeOf(() => parseEnvelopeHeader(bytes));
      assert.doesNotMatch(cause, /input ends inside the header/);
    });
  }

  it("bounds the maximum header size", () => {
    // 4 + 1 + 1 + 30 + 4 + 32 + 8192 + 2 + 4096 + 4 + 32
    assert.equal(MAX_HEADER_BYTES, 12398);
  });
});
