import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { ArborError } from "../../src/errors/index.ts";
import { fromTextForm, toTextForm } from "../../src/envelope/index.ts";
import { randomBytes } from "./helpers.ts";

function assertInvalidCiphertext(text: unknown, label: string): void {
  assert.throws(
    () => fromTextForm(text as string),
    (error: unknown) => {
      assert.ok(error instanceof ArborError, `${label}: expected ArborError`);
      assert.equal(error.code, "INVALID_ARGUMENT", label);
      assert.equal(error.detail.parameter, "ciphertext", label);
      assert.match(error.message, /^invalid ciphertext /, label);
      return true;
    },
    label,
  );
}

describe("envelope text form", () => {
  it("round-trips every length from 1 to 64", () => {
    for (let length = 1; length <= 64; length += 1) {
      const bytes = randomBytes(length);
      const text = toTextForm(bytes);

      assert.match(text, /^arbor:v1:[A-Za-z0-9_-]+$/);
      assert.deepEqual(fromTextForm(text), bytes);
    }
  });

  it("encodes as unpadded base64url", () => {
    assert.equal(toTextForm(Uint8Array.of(0xfb, 0xff)), "arbor:v1:-_8");
  });

  it("rejects malformed text forms", () => {
    const cases: Record<string, unknown> = {
      "a number": 42,
      "an empty string": "",
      "the prefix alone": "arbor:v1:",
      "another version": "arbor:v2:AAAA",
      "an upper-case prefix": "ARBOR:v1:AAAA",
      "leading whitespace": " arbor:v1:AAAA",
      "trailing whitespace": "arbor:v1:AAAA ",
      "a newline": "arbor:v1:AA\nAA",
      padding: "arbor:v1:AA==",
      "standard base64 characters": "arbor:v1:+/8",
      "an impossible length": "arbor:v1:AAAAA",
      "non-zero trailing bits": "arbor:v1:AB",
      "raw base64url without prefix": "AAAA",
    };
    for (const [name, text] of Object.entries(cases)) assertInvalidCiphertext(text, name);
  });

  it("rejects an empty envelope", () => {
    assert.throws(
      () => toTextForm(new Uint8Array(0)),
      (error: unknown) => error instanceof ArborError && error.code === "INVALID_ARGUMENT",
    );
  });

  it("returns a buffer of its own", () => {
    const bytes = fromTextForm(toTextForm(randomBytes(5)));

    assert.equal(bytes.byteOffset, 0);
    assert.equal(bytes.buffer.byteLength, 5);
  });
});
