import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";

import { PinCeremony, readConfiguredPin } from "../../../src/root/pkcs11/pin.ts";
import { assertArborError } from "../helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "arbor-pin-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const decoder = new TextDecoder();

function pinFile(name: string, content: string | Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, content, { mode: 0o600 });
  return path;
}

void describe("PKCS#11 PIN sources", () => {
  void test("environment variable is read", async () => {
    const pin = await readConfiguredPin({ env: { ARBOR_PKCS11_PIN: "1234 ü" } });
    assert.ok(pin);
    assert.equal(decoder.decode(pin), "1234 ü");
  });

  void test("file loses one trailing line break", async () => {
    const cases: [string, string, string][] = [
      ["plain", "secret", "secret"],
      ["lf", "secret\n", "secret"],
      ["crlf", "secret\r\n", "secret"],
      ["two", "secret\n\n", "secret\n"],
      ["inner", "sec ret\t", "sec ret\t"],
    ];
    for (const [name, content, expected] of cases) {
      const pin = await readConfiguredPin({ pinFile: pinFile(name, content) });
      assert.ok(pin, name);
      assert.equal(decoder.decode(pin), expected, name);
    }
  });

  void test("no source gives null", async () => {
    assert.equal(await readConfiguredPin({}), null);
    assert.equal(await readConfiguredPin({ env: { ARBOR_PKCS11_PIN: "" }, pinFile: null }), null);
  });

  void test("both sources are rejected", async () => {
    const path = pinFile("both", "secret");
    const error = await assertArborError(
      readConfiguredPin({ env: { ARBOR_PKCS11_PIN: "other" }, pinFile: path }),
      "INVALID_ARGUMENT",
      /both ARBOR_PKCS11_PIN and the PIN file .* are set: set only one of them/,
    );
    assert.ok(!error.message.includes("other"));
  });

  void test("unreadable or invalid file is rejected without its content", async () => {
    await assertArborError(
      readConfiguredPin({ pinFile: join(dir, "absent") }),
      "INVALID_ARGUMENT",
      /failed to read the PIN file .*absent \(ENOENT\)/,
    );
    await assertArborError(
      readConfiguredPin({ pinFile: pinFile("empty", "\n") }),
      "INVALID_ARGUMENT",
      /invalid PIN from the PIN file .*: it is empty/,
    );
    const error = await assertArborError(
      readConfiguredPin({ pinFile: pinFile("binary", Uint8Array.of(0x41, 0xff, 0x42)) }),
      "INVALID_ARGUMENT",
      /it is not UTF-8 text/,
    );
    assert.equal(error.detail.value, undefined, "the PIN is not quoted back");
  });

  void test("ceremony nonce compares exactly", () => {
    const ceremony = new PinCeremony(0);
    assert.match(ceremony.nonce, /^[A-Za-z0-9_-]{22}$/);
    assert.ok(ceremony.matches(ceremony.nonce));
    assert.ok(!ceremony.matches(`${ceremony.nonce}x`));
    assert.ok(!ceremony.matches(new PinCeremony(0).nonce));
    assert.deepEqual(ceremony.describe(), { nonce: ceremony.nonce, threshold: 1, progress: 0 });
  });
});
