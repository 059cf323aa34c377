import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  UNSEAL_SHARE_BYTES,
  decodeUnsealShare,
  encodeUnsealShare,
} from "../../src/root/unseal-shares.ts";
import { assertArborError } from "./helpers.ts";

void describe("unseal share encoding", () => {
  void test("decode reverses encode", () => {
    const share = Uint8Array.from({ length: UNSEAL_SHARE_BYTES }, (_, i) => (i * 37) & 0xff);

    const text = encodeUnsealShare(share);

    assert.match(text, /^[A-Za-z0-9+/]{44}$/);
    assert.deepEqual(decodeUnsealShare(text), share);
    assert.deepEqual(decodeUnsealShare(`  ${text}\n`), share, "surrounding whitespace is ignored");
  });

  for (const text of ["", "   ", "abc", "a b c d", "ab$d", "abcd=", "====", "YWJj\nZA=="]) {
    void test(`decode rejects ${JSON.stringify(text)}`, async () => {
      const error = await assertArborError(
        () => decodeUnsealShare(text),
        "INVALID_SHARE",
        /expected the standard base64 text/,
      );
      assert.equal(error.detail.parameter, "share");
      assert.equal(error.detail.value, undefined, "the rejected text is not echoed");
    });
  }
});
