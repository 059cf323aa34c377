import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { ArborError } from "../../src/errors/index.ts";
import {
  createEncryptStream,
  encryptEnvelope,
  type EnvelopeEncryptParams,
} from "../../src/envelope/index.ts";
import { newMessageParams, randomBytes, TestServiceKey } from "./helpers.ts";

const serviceKey = new TestServiceKey();

function assertArborError(
  action: () => unknown,
  code: string,
  parameter: string,
  messagePattern: RegExp,
): void {
  assert.throws(action, (error: unknown) => {
    assert.ok(error instanceof ArborError, `expected ArborError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.equal(error.detail.parameter, parameter);
    assert.match(error.message, messagePattern);
    return true;
  });
}

/** Calls both encrypt entry points with the same parameters. */
const entryPoints: Record<string, (params: EnvelopeEncryptParams) => unknown> = {
  encryptEnvelope: (params) => encryptEnvelope(params, randomBytes(10)),
  createEncryptStream: (params) => createEncryptStream(params).destroy(),
};

describe("envelope encrypt parameters", () => {
  for (const [entryName, encrypt] of Object.entries(entryPoints)) {
    describe(entryName, () => {
      for (const field of ["nonce", "iv"]) {
        it(`rejects a caller ${field}`, () => {
          const nonce = randomBytes(12);
          const params = { ...newMessageParams(serviceKey), [field]: nonce };

          assertArborError(
            () => encrypt(params),
            "UNSUPPORTED_FIELD",
            field,
            new RegExp(`^unsupported field "${field}": envelope nonces are derived`),
          );
        });

        it(`rejects a ${field} set to undefined`, () => {
          const params = { ...newMessageParams(serviceKey), [field]: undefined };

          assertArborError(() => encrypt(params), "UNSUPPORTED_FIELD", field, /unsupported field/);
        });
      }

      it("never quotes the unsupported value", () => {
        const params = { ...newMessageParams(serviceKey), nonce: "0123456789abcdef" };

        assert.throws(
          () => encrypt(params),
          (error: unknown) =>
            error instanceof ArborError &&
            error.code === "UNSUPPORTED_FIELD" &&
            !error.message.includes("0123456789abcdef") &&
            !JSON.stringify(error.detail).includes("0123456789abcdef"),
        );
      });

      it("rejects an unknown field", () => {
        const params = { ...newMessageParams(serviceKey), algorithm: "aes-128-gcm" };

        assertArborError(
          () => encrypt(params),
          "UNSUPPORTED_FIELD",
          "algorithm",
          /accepted fields are dataKey, keyId, keyVersion, wrappedDataKey, context, frameSize/,
        );
      });

      const invalid: Array<[string, Partial<Record<string, unknown>>, string, RegExp]> = [
        ["31-byte data key", { dataKey: randomBytes(31) }, "dataKey", /"31 bytes"/],
        ["string data key", { dataKey: "key" }, "dataKey", /Uint8Array of 32 bytes/],
        ["all-zero data key", { dataKey: new Uint8Array(32) }, "dataKey", /already zeroed/],
        [
          "key id without prefix",
          { keyId: "abcdefghijklmnopqrstuvwxyz" },
          "keyId",
          /key_ followed by 26/,
        ],
        ["key id with uppercase", { keyId: "key_ABCDEFGHIJKLMNOPQRSTUVWXYZ" }, "keyId", /key_/],
        ["key id too long", { keyId: "key_abcdefghijklmnopqrstuvwxyza" }, "keyId", /key_/],
        ["key version 0", { keyVersion: 0 }, "keyVersion", /1 to 4294967295/],
        ["key version 2^32", { keyVersion: 2 ** 32 }, "keyVersion", /1 to 4294967295/],
        ["fractional key version", { keyVersion: 1.5 }, "keyVersion", /integer/],
        ["string key version", { keyVersion: "1" }, "keyVersion", /integer/],
        [
          "empty wrapped key",
          { wrappedDataKey: new Uint8Array(0) },
          "wrappedDataKey",
          /1 to 4096 bytes/,
        ],
        [
          "4097-byte wrapped key",
          { wrappedDataKey: new Uint8Array(4097) },
          "wrappedDataKey",
          /1 to 4096/,
        ],
        ["frame size 15", { frameSize: 15 }, "frameSize", /16 to 1048576/],
        ["frame size 1 MiB + 1", { frameSize: 1048577 }, "frameSize", /16 to 1048576/],
        ["fractional frame size", { frameSize: 100.5 }, "frameSize", /integer/],
        ["array context", { context: ["a"] }, "context", /plain object/],
        ["Map context", { context: new Map([["a", "b"]]) }, "context", /plain object/],
        ["number context value", { context: { a: 1 } }, "context.a", /must be strings/],
        ["empty context key", { context: { "": "x" } }, "context", /1 to 128 bytes/],
        [
          "129-byte context key",
          { context: { ["k".repeat(129)]: "x" } },
          "context",
          /1 to 128 bytes/,
        ],
        [
          "1025-byte context value",
          { context: { a: "v".repeat(1025) } },
          "context.a",
          /at most 1024 bytes/,
        ],
        [
          "lone surrogate in value",
          { context: { a: "\ud800" } },
          "context.a",
          /lone UTF-16 surrogates/,
        ],
        [
          "lone surrogate in key",
          { context: { "\udc00": "x" } },
          "context",
          /lone UTF-16 surrogates/,
        ],
        ["symbol context key", { context: { [Symbol("s")]: "x" } }, "context", /must be strings/],
      ];
      for (const [name, override, parameter, pattern] of invalid) {
        it(`rejects ${name}`, () => {
          const params = { ...newMessageParams(serviceKey), ...override };

          assertArborError(() => encrypt(params), "INVALID_ARGUMENT", parameter, pattern);
        });
      }

      it("rejects 65 context entries", () => {
        const context = Object.fromEntries(
          Array.from({ length: 65 }, (_, index) => [`k${index}`, "v"]),
        );

        assertArborError(
          () => encrypt(newMessageParams(serviceKey, { context })),
          "INVALID_ARGUMENT",
          "context",
          /at most 64 entries/,
        );
      });

      it("rejects a context over 8192 bytes", () => {
        // 8 entries of 4 + 1 + 1024 bytes each = 8234 bytes with the count.
        const context = Object.fromEntries(
          Array.from({ length: 8 }, (_, index) => [`${index}`, "v".repeat(1024)]),
        );

        assertArborError(
          () => encrypt(newMessageParams(serviceKey, { context })),
          "INVALID_ARGUMENT",
          "context",
          /at most 8192 bytes/,
        );
      });

      it("accepts the limits exactly", () => {
        const maxEntries = Object.fromEntries(
          Array.from({ length: 64 }, (_, index) => [`k${index}`, ""]),
        );
        const maxKeyAndValue = { ["k".repeat(128)]: "v".repeat(1024) };

        assert.doesNotThrow(() => encrypt(newMessageParams(serviceKey, { context: maxEntries })));
        assert.doesNotThrow(() =>
          encrypt(newMessageParams(serviceKey, { context: maxKeyAndValue })),
        );
        // 2 (count) + 7 * (2 + 1 + 2 + 1024) + (2 + 1 + 2 + 982) = 8192 bytes.
        const maxSize = Object.fromEntries([
          ...Array.from({ length: 7 }, (_, index) => [`${index}`, "v".repeat(1024)]),
          ["7", "v".repeat(982)],
        ]);
        assert.doesNotThrow(() => encrypt(newMessageParams(serviceKey, { context: maxSize })));
        assert.doesNotThrow(() => encrypt(newMessageParams(serviceKey, { frameSize: 16 })));
        assert.doesNotThrow(() => encrypt(newMessageParams(serviceKey, { frameSize: 1048576 })));
        assert.doesNotThrow(() =>
          encrypt(newMessageParams(serviceKey, { keyVersion: 2 ** 32 - 1 })),
        );
        assert.doesNotThrow(() =>
          encrypt(newMessageParams(serviceKey, { wrappedDataKey: new Uint8Array(4096) })),
        );
      });
    });
  }

  it("rejects non-object parameters", () => {
    assertArborError(
      () => encryptEnvelope(null as unknown as EnvelopeEncryptParams, randomBytes(1)),
      "INVALID_ARGUMENT",
      "params",
      /must be an object/,
    );
  });

  it("rejects a non-binary plaintext", () => {
    assertArborError(
      () => encryptEnvelope(newMessageParams(serviceKey), "text" as unknown as Uint8Array),
      "INVALID_ARGUMENT",
      "plaintext",
      /must be a Uint8Array/,
    );
  });
});
