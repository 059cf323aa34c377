import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";

import { loadConfig, type ConfigFlags } from "../../../src/config/index.ts";
import { assertArborError } from "../helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "arbor-config-pkcs11-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

function load(
  yaml: string | undefined,
  env: NodeJS.ProcessEnv = {},
  flags: Partial<ConfigFlags> = {},
) {
  let file: string | undefined;
  if (yaml !== undefined) {
    files += 1;
    file = join(dir, `arbor-${files}.yaml`);
    writeFileSync(file, yaml);
  }
  return loadConfig({ file, env, flags });
}

const MODULE = "/usr/lib/softhsm/libsofthsm2.so";

void describe("configuration of the PKCS#11 root", () => {
  void test("file sets the pkcs11 provider", async () => {
    const config = await load(
      `root: { provider: pkcs11, module: ${MODULE}, token_label: arbor, key_label: root-key, pin_file: /run/arbor/pin }\n`,
    );
    assert.deepEqual(config.root, {
      provider: "pkcs11",
      modulePath: MODULE,
      tokenLabel: "arbor",
      keyLabel: "root-key",
      pinFile: "/run/arbor/pin",
    });
  });

  void test("environment and flags set it, flags first", async () => {
    const env = {
      ARBOR_ROOT_PROVIDER: "pkcs11",
      ARBOR_PKCS11_MODULE: MODULE,
      ARBOR_PKCS11_TOKEN_LABEL: "from-env",
      ARBOR_PKCS11_PIN_FILE: "/env/pin",
      ARBOR_PKCS11_PIN: "must-not-appear",
    };
    const config = await load(undefined, env, { pkcs11TokenLabel: "from-flag" });

    assert.deepEqual(config.root, {
      provider: "pkcs11",
      modulePath: MODULE,
      tokenLabel: "from-flag",
      keyLabel: null,
      pinFile: "/env/pin",
    });
    assert.ok(
      !JSON.stringify(config).includes("must-not-appear"),
      "the PIN is never configuration",
    );
  });

  void test("sealed stays the default", async () => {
    const config = await load(undefined);
    assert.deepEqual(config.root, { provider: "sealed", shares: 5, threshold: 3 });
  });

  void test("module and token label are required", async () => {
    await assertArborError(
      load("root: { provider: pkcs11, token_label: arbor }\n"),
      "INVALID_ARGUMENT",
      /missing root.module: root.provider pkcs11 \(set by file .*\) needs root.module and root.token_label/,
    );
    await assertArborError(
      load(`root: { provider: pkcs11, module: ${MODULE} }\n`),
      "INVALID_ARGUMENT",
      /missing root.token_label/,
    );
  });

  void test("settings of the other provider are rejected", async () => {
    await assertArborError(
      load(`root: { provider: pkcs11, module: ${MODULE}, token_label: a, shares: 5 }\n`),
      "INVALID_ARGUMENT",
      /root.shares \(set by file .*\) does not apply to root.provider pkcs11/,
    );
    await assertArborError(
      load(`root: { module: ${MODULE} }\n`),
      "INVALID_ARGUMENT",
      /root.module \(set by file .*\) does not apply to root.provider sealed \(set by the default\)/,
    );
  });

  void test("PIN in the file is rejected", async () => {
    const error = await assertArborError(
      load(`root: { provider: pkcs11, module: ${MODULE}, token_label: a, pin: "1234" }\n`),
      "INVALID_ARGUMENT",
      /root.pin in file .* is not accepted: the PKCS#11 PIN is never read from the configuration file/,
    );
    assert.ok(!error.message.includes("1234"));
  });

  void test("token label must fit CK_TOKEN_INFO", async () => {
    await assertArborError(
      load(`root: { provider: pkcs11, module: ${MODULE}, token_label: ${"x".repeat(33)} }\n`),
      "INVALID_ARGUMENT",
      /root.token_label .*must be at most 32 bytes/,
    );
    await assertArborError(
      load(`root: { provider: pkcs11, module: ${MODULE}, token_label: "a " }\n`),
      "INVALID_ARGUMENT",
      /must not end with spaces/,
    );
    await assertArborError(
      load(undefined, { ARBOR_ROOT_PROVIDER: "hsm" }),
      "INVALID_ARGUMENT",
      /root.provider "hsm": must be one of "sealed", "pkcs11"/,
    );
  });
});
