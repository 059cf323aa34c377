import assert from "node:assert/strict";
import { renameSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, test } from "node:test";

import type { RootState } from "../../../src/root/types.ts";
import { assertArborError } from "../helpers.ts";
import {
  FaultyCalls,
  openPkcs11Tree,
  realCalls,
  setupPkcs11Root,
  type Pkcs11Setup,
} from "./helpers.ts";
import { softhsmSkip } from "./softhsm.ts";

const encoder = new TextEncoder();
const aad = encoder.encode("a");
const INTERVAL_MS = 60_000;

/** Waits, in real time, until the root reports `state`; fails after a generous bound. */
async function waitForState(root: { status(): { state: RootState } }, state: RootState) {
  for (let waited = 0; waited < 10_000; waited += 10) {
    if (root.status().state === state) return;
    await sleep(10);
  }
  assert.fail(`the root did not become ${state}; it is ${root.status().state}`);
}

function entries(setup: Pkcs11Setup, level: string, message: RegExp) {
  return setup.logger.entries.filter((e) => e.level === level && message.test(e.message));
}

void describe("PKCS#11 root outage and recovery", { skip: softhsmSkip }, () => {
  let setup: Pkcs11Setup | null = null;

  afterEach(async () => {
    await setup?.close();
    setup = null;
  });

  void test("device removed is ROOT_UNAVAILABLE, then recovers", async () => {
    const faulty = new FaultyCalls(realCalls());
    setup = await setupPkcs11Root({
      calls: faulty.calls,
      deps: { recoveryIntervalMs: INTERVAL_MS },
    });
    const { root, clock } = setup;
    const blob = await root.wrap(encoder.encode("k"), aad);

    faulty.failWith("CKR_DEVICE_REMOVED");
    const error = await assertArborError(
      root.wrap(encoder.encode("k"), aad),
      "ROOT_UNAVAILABLE",
      /CKR_DEVICE_REMOVED/,
    );
    assert.equal(error.status, 503);
    assert.equal(root.status().state, "unavailable");

    const failedBefore = faulty.failedCalls;
    await assertArborError(root.unwrap(blob, aad), "ROOT_UNAVAILABLE", /unavailable/);
    await assertArborError(root.signCheckpoint(new Uint8Array(32)), "ROOT_UNAVAILABLE");
    assert.equal(
      faulty.failedCalls,
      failedBefore,
      "calls between attempts fail without the module",
    );

    clock.advance(INTERVAL_MS);
    await assertArborError(root.wrap(encoder.encode("k"), aad), "ROOT_UNAVAILABLE");
    assert.ok(faulty.failedCalls > failedBefore, "a due attempt reaches the module");
    assert.equal(entries(setup, "error", /unreachable/).length, 1, "one error log per outage");

    faulty.failWith(null);
    clock.advance(INTERVAL_MS);
    const fresh = await root.wrap(encoder.encode("after"), aad);

    assert.equal(root.status().state, "unsealed");
    assert.deepEqual(await root.unwrap(blob, aad), encoder.encode("k"));
    assert.deepEqual(await root.unwrap(fresh, aad), encoder.encode("after"));
    assert.equal(entries(setup, "info", /reachable again/).length, 1);
  });

  void test("one invalid session handle is retried", async () => {
    const faulty = new FaultyCalls(realCalls());
    setup = await setupPkcs11Root({ calls: faulty.calls });

    faulty.failNext("C_EncryptInit", "CKR_SESSION_HANDLE_INVALID");
    const blob = await setup.root.wrap(encoder.encode("k"), aad);
    faulty.failNext("C_DecryptInit", "CKR_OPERATION_ACTIVE");
    const opened = await setup.root.unwrap(blob, aad);

    assert.deepEqual(opened, encoder.encode("k"));
    assert.equal(faulty.failedCalls, 2);
    assert.equal(setup.root.status().state, "unsealed");
    assert.equal(entries(setup, "error", /./).length, 0);
  });

  void test("timer recovers without a call", async () => {
    const faulty = new FaultyCalls(realCalls());
    setup = await setupPkcs11Root({ calls: faulty.calls, deps: { recoveryIntervalMs: 20 } });

    faulty.failWith("CKR_TOKEN_NOT_PRESENT");
    await assertArborError(setup.root.wrap(encoder.encode("k"), aad), "ROOT_UNAVAILABLE");
    assert.equal(setup.root.status().state, "unavailable");
    faulty.failWith(null);

    await waitForState(setup.root, "unsealed");
    assert.equal((await setup.root.wrap(encoder.encode("k"), aad)).rootVersion, 1);
  });

  void test("PIN refused while re-connecting seals the root", async () => {
    const faulty = new FaultyCalls(realCalls());
    setup = await setupPkcs11Root({ calls: faulty.calls });

    faulty.failWhen((method) => {
      if (method === "C_EncryptInit") return "CKR_USER_NOT_LOGGED_IN";
      if (method === "C_Login") return "CKR_PIN_INCORRECT";
      return null;
    });
    await assertArborError(
      setup.root.wrap(encoder.encode("k"), aad),
      "ROOT_UNAVAILABLE",
      /refused the PIN while re-connecting \(CKR_PIN_INCORRECT\)/,
    );

    assert.equal(setup.root.status().state, "sealed");
    assert.equal(entries(setup, "error", /refused the stored PIN/).length, 1);
    await assertArborError(setup.root.wrap(encoder.encode("k"), aad), "SEALED");
  });

  void test("key tree serves cached masters during an outage", async () => {
    const faulty = new FaultyCalls(realCalls());
    const harness = await openPkcs11Tree({
      calls: faulty.calls,
      deps: { recoveryIntervalMs: INTERVAL_MS },
    });
    setup = harness;
    const { tree, cache, clock } = harness;
    await tree.createKey("prod");
    await tree.createKey("prod/ledger:encrypt");
    await tree.createKey("stage");
    await tree.createKey("stage/ledger:encrypt");
    const prod = await tree.primaryFor("prod/ledger:encrypt", "encrypt");
    const stage = await tree.primaryFor("stage/ledger:encrypt", "encrypt");
    const material = await tree.withMaterial(prod, (bytes) => Buffer.from(bytes));
    cache.clear();
    await tree.withMaterial(prod, () => undefined);

    faulty.failWith("CKR_DEVICE_REMOVED");
    const cached = await tree.withMaterial(prod, (bytes) => Buffer.from(bytes));
    const error = await assertArborError(
      tree.withMaterial(stage, () => undefined),
      "ROOT_UNAVAILABLE",
    );

    assert.deepEqual(cached, material, "the cached chain needs no root call");
    assert.equal(error.status, 503, "an outage is not reported as corruption");
    assert.equal(harness.logger.entries.filter((e) => /failed to open/.test(e.message)).length, 0);

    faulty.failWith(null);
    clock.advance(INTERVAL_MS);
    await tree.withMaterial(stage, () => undefined);
  });

  void test("token directory moved away and back", async () => {
    setup = await setupPkcs11Root({ deps: { recoveryIntervalMs: INTERVAL_MS } });
    const { root, clock, hsm } = setup;
    const blob = await root.wrap(encoder.encode("k"), aad);
    const away = `${hsm.tokenDir}-away`;

    renameSync(hsm.tokenDir, away);
    try {
      await assertArborError(
        root.wrap(encoder.encode("k"), aad),
        "ROOT_UNAVAILABLE",
        new RegExp(
          `token ${setup.token.label} is unreachable: re-connecting after C_Encrypt failed`,
        ),
      );
      assert.equal(root.status().state, "unavailable");
    } finally {
      renameSync(away, hsm.tokenDir);
    }

    clock.advance(INTERVAL_MS);
    const fresh = await root.wrap(encoder.encode("back"), aad);

    assert.equal(root.status().state, "unsealed");
    assert.deepEqual(await root.unwrap(blob, aad), encoder.encode("k"));
    assert.deepEqual(await root.unwrap(fresh, aad), encoder.encode("back"));
  });
});
