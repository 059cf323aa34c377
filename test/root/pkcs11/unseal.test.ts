import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, describe, test } from "node:test";

import { assertArborError, includesBytes, recordZeroedBuffers } from "../helpers.ts";
import { setupPkcs11Root, unsealWithPin, type Pkcs11Setup } from "./helpers.ts";
import { softhsmSkip } from "./softhsm.ts";

const encoder = new TextEncoder();
const dir = mkdtempSync(join(tmpdir(), "arbor-pin-"));
after(() => rmSync(dir, { recursive: true, force: true }));

void describe("PKCS#11 root unseal", { skip: softhsmSkip }, () => {
  let setup: Pkcs11Setup | null = null;

  afterEach(async () => {
    await setup?.close();
    setup = null;
  });

  void test("wrong PIN is rate-limited", async () => {
    setup = await setupPkcs11Root({
      unseal: false,
      deps: { unsealRateLimit: { maxFailures: 3, windowMs: 60_000, backoffMs: 60_000 } },
    });
    const { root, clock } = setup;

    for (let attempt = 1; attempt <= 3; attempt++) {
      const error = await assertArborError(
        unsealWithPin(root, encoder.encode(`wrong-${attempt}`)),
        "UNSEAL_FAILED",
        /refused the PIN \(CKR_PIN_INCORRECT\)/,
      );
      assert.equal(error.status, 400);
    }
    await assertArborError(
      unsealWithPin(root, setup.pinBytes()),
      "RATE_LIMITED",
      /retry in 60 seconds/,
    );
    assert.equal(root.status().state, "sealed");

    clock.advance(60_000);
    await unsealWithPin(root, setup.pinBytes());
    assert.equal(root.status().state, "unsealed");
  });

  void test("PIN appears in no error or log", async () => {
    setup = await setupPkcs11Root({ unseal: false });
    const wrong = "wrong-pin-4d1f77";

    const error = await assertArborError(
      unsealWithPin(setup.root, encoder.encode(wrong)),
      "UNSEAL_FAILED",
    );
    await unsealWithPin(setup.root, setup.pinBytes());
    setup.root.seal();

    const text = `${error.message} ${String(error.cause)} ${setup.logger.text()}`;
    assert.ok(!text.includes(wrong));
    assert.ok(!text.includes(setup.token.pin));
  });

  void test("seal zeroes the kept PIN", async () => {
    setup = await setupPkcs11Root({ unseal: false });
    const pin = setup.pinBytes();
    await unsealWithPin(setup.root, pin);
    assert.deepEqual(pin, setup.pinBytes(), "the caller's buffer is not zeroed by the provider");

    const zeroed = await recordZeroedBuffers(() => setup!.root.seal());

    assert.ok(includesBytes(zeroed, setup.pinBytes()), "seal zeroes the provider's copy");
    assert.equal(setup.root.status().state, "sealed");
    await assertArborError(setup.root.wrap(new Uint8Array(1), new Uint8Array()), "SEALED");
  });

  void test("wrong PIN fails while another login is active", async () => {
    setup = await setupPkcs11Root();
    const second = await setup.reopen();
    const blob = await setup.root.wrap(encoder.encode("k"), encoder.encode("a"));

    await assertArborError(unsealWithPin(second, encoder.encode("wrong")), "UNSEAL_FAILED");

    assert.equal(second.status().state, "sealed");
    // The failed login logged the process out; the first provider logs in again by itself.
    assert.deepEqual(await setup.root.unwrap(blob, encoder.encode("a")), encoder.encode("k"));
    assert.equal(setup.root.status().state, "unsealed");
  });

  void test("invalid PIN bytes are rejected and counted", async () => {
    setup = await setupPkcs11Root({
      unseal: false,
      deps: { unsealRateLimit: { maxFailures: 2 } },
    });

    await assertArborError(
      unsealWithPin(setup.root, new Uint8Array()),
      "INVALID_ARGUMENT",
      /invalid PIN from the unseal submission: it is empty/,
    );
    await assertArborError(
      unsealWithPin(setup.root, Uint8Array.of(0xff, 0xfe)),
      "INVALID_ARGUMENT",
      /not UTF-8 text/,
    );
    await assertArborError(unsealWithPin(setup.root, setup.pinBytes()), "RATE_LIMITED");
  });

  void test("ceremony nonce and expiry are enforced", async () => {
    setup = await setupPkcs11Root({ unseal: false, deps: { ceremonyTimeoutMs: 60_000 } });
    const { root, clock } = setup;
    const ceremony = root.beginUnseal();

    assert.deepEqual(root.beginUnseal(), ceremony, "the ceremony in progress is returned");
    assert.equal(ceremony.threshold, 1);
    assert.deepEqual(root.status().ceremony, ceremony);
    clock.advance(60_000);
    assert.equal(root.status().ceremony, null);
    await assertArborError(root.submit(ceremony.nonce, setup.pinBytes()), "CEREMONY_NOT_FOUND");
    const next = root.beginUnseal();
    assert.notEqual(next.nonce, ceremony.nonce);
    await assertArborError(
      root.submit(ceremony.nonce, setup.pinBytes()),
      "CEREMONY_NONCE_MISMATCH",
    );
    await root.submit(next.nonce, setup.pinBytes());
    assert.equal(root.status().state, "unsealed");
  });

  void test("missing token is ROOT_UNAVAILABLE and keeps the ceremony", async () => {
    setup = await setupPkcs11Root({ unseal: false });
    await setup.storage.db
      .updateTable("pkcs11_root")
      .set({ token_label: "no-such-token" })
      .execute();
    const elsewhere = await setup.reopen({ tokenLabel: "no-such-token" });
    const { nonce } = elsewhere.beginUnseal();

    const error = await assertArborError(
      elsewhere.submit(nonce, setup.pinBytes()),
      "ROOT_UNAVAILABLE",
      /no PKCS#11 token labelled no-such-token is present/,
    );

    assert.equal(error.status, 503);
    assert.equal(elsewhere.status().ceremony?.nonce, nonce);
  });
});

void describe("PKCS#11 root initialization", { skip: softhsmSkip }, () => {
  let setup: Pkcs11Setup | null = null;

  afterEach(async () => {
    await setup?.close();
    setup = null;
  });

  void test("initialize without a PIN is rejected", async () => {
    setup = await setupPkcs11Root({ initialize: false });

    await assertArborError(
      setup.root.initialize(),
      "INVALID_ARGUMENT",
      /needs the token's user PIN: set ARBOR_PKCS11_PIN or a PIN file/,
    );
    assert.equal(setup.root.status().state, "uninitialized");
  });

  void test("initialize with a wrong PIN stores nothing", async () => {
    setup = await setupPkcs11Root({ initialize: false });

    await assertArborError(
      setup.root.initialize({ pin: encoder.encode("wrong") }),
      "UNSEAL_FAILED",
      /CKR_PIN_INCORRECT/,
    );

    assert.equal(setup.root.status().state, "uninitialized");
    assert.equal(await setup.storage.pkcs11Root.load(), null);
  });

  void test("PIN from the environment initializes and unseals", async () => {
    setup = await setupPkcs11Root({ initialize: false });
    const env = { ARBOR_PKCS11_PIN: setup.token.pin };
    const root = await setup.reopen({ pin: { env } });

    const result = await root.initialize();
    assert.equal(root.status().state, "sealed");
    assert.equal(await root.unsealWithConfiguredPin(), true);

    assert.equal(result.rootVersion, 1);
    assert.equal(root.status().state, "unsealed");
  });

  void test("PIN file unseals", async () => {
    setup = await setupPkcs11Root({ unseal: false });
    const file = join(dir, "pin");
    writeFileSync(file, `${setup.token.pin}\n`, { mode: 0o600 });
    const root = await setup.reopen({ pin: { pinFile: file } });

    assert.equal(await root.unsealWithConfiguredPin(), true);
    assert.equal(root.status().state, "unsealed");
  });

  void test("no PIN source leaves the root sealed", async () => {
    setup = await setupPkcs11Root({ unseal: false });

    assert.equal(await setup.root.unsealWithConfiguredPin(), false);
    assert.equal(setup.root.status().state, "sealed");
  });

  void test("configured token label must match the stored one", async () => {
    setup = await setupPkcs11Root();

    await assertArborError(
      setup.reopen({ tokenLabel: "another-token" }),
      "INVALID_ARGUMENT",
      new RegExp(`root keys are on the token labelled ${setup.token.label}`),
    );
    await assertArborError(
      setup.reopen({ tokenLabel: "x".repeat(33) }),
      "INVALID_ARGUMENT",
      /1 to 32 bytes/,
    );
    await assertArborError(
      setup.reopen({ calls: undefined, modulePath: join(dir, "missing.so") }),
      "INVALID_ARGUMENT",
      /failed to load the PKCS#11 module/,
    );
  });
});
