import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ckrName, pkcs11js } from "../../../src/root/pkcs11/calls.ts";

void describe("PKCS#11 return value names", () => {
  void test("message name is read first", () => {
    assert.equal(
      ckrName(Object.assign(new Error("CKR_PIN_INCORRECT"), { code: 160 })),
      "CKR_PIN_INCORRECT",
    );
    // pkcs11js 2.1.7 reports C_SetAttributeValue failures as a plain Error with `NAME:number`.
    assert.equal(ckrName(new Error("CKR_ATTRIBUTE_READ_ONLY:16")), "CKR_ATTRIBUTE_READ_ONLY");
  });

  void test("numeric code names the value", () => {
    const p = pkcs11js();
    assert.equal(
      ckrName(Object.assign(new Error("native"), { code: p.CKR_DEVICE_REMOVED })),
      "CKR_DEVICE_REMOVED",
    );
    assert.equal(
      ckrName(Object.assign(new Error("native"), { code: 0x35 })),
      "CKR_AEAD_DECRYPT_FAILED",
    );
    assert.equal(ckrName(Object.assign(new Error("native"), { code: 0x7777 })), "CKR_0x7777");
  });

  void test("other errors have no name", () => {
    assert.equal(ckrName(new TypeError("Argument 2 has wrong type")), null);
    assert.equal(ckrName(Object.assign(new Error("native"), { code: 0 })), null);
    assert.equal(ckrName("CKR_GENERAL_ERROR"), null);
    assert.equal(ckrName(undefined), null);
  });
});
