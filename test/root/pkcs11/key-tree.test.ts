import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { afterEach, describe, test } from "node:test";

import { createEnvelopeService } from "../../../src/envelope/service.ts";
import type { KeyScope } from "../../../src/hierarchy/index.ts";
import { assertArborError } from "../helpers.ts";
import { openPkcs11Tree, type Pkcs11TreeHarness } from "./helpers.ts";
import { softhsmSkip } from "./softhsm.ts";

const ALL: KeyScope = { environment: null, tenant: null };
const PARALLEL = 5000;
// NOTE: smaller than PARALLEL because parallel requests through the key tree slow down
// quadratically in the SQLite storage layer (Kysely 0.28's connection mutex wakes every waiter on
// each release), with either root provider; 5000 take minutes there.
const PARALLEL_TREE = 1000;

void describe("key tree on the PKCS#11 root", { skip: softhsmSkip }, () => {
  let harness: Pkcs11TreeHarness | null = null;

  afterEach(async () => {
    await harness?.close();
    harness = null;
  });

  void test("thousands of parallel root calls succeed", async () => {
    harness = await openPkcs11Tree();
    const { root } = harness;
    const aad = new TextEncoder().encode("parallel");
    const plaintexts = Array.from({ length: PARALLEL / 2 }, () => new Uint8Array(randomBytes(32)));

    const blobs = await Promise.all(plaintexts.map((plaintext) => root.wrap(plaintext, aad)));
    const [opened, more] = await Promise.all([
      Promise.all(blobs.map((blob) => root.unwrap(blob, aad))),
      Promise.all(plaintexts.map((plaintext) => root.wrap(plaintext, aad))),
    ]);

    assert.equal(opened.length + more.length, PARALLEL);
    opened.forEach((bytes, index) => assert.deepEqual(bytes, plaintexts[index]));
    assert.equal(
      new Set(more.map((blob) => Buffer.from(blob.ciphertext).toString("hex"))).size,
      more.length,
    );
    assert.equal(root.status().state, "unsealed");
  });

  void test("parallel envelope operations on cold masters", async () => {
    harness = await openPkcs11Tree();
    const { tree, cache } = harness;
    const environments = Array.from({ length: 20 }, (_, index) => `env${index}`);
    await Promise.all(environments.map((environment) => tree.createKey(environment)));
    await Promise.all(
      environments.map((environment) => tree.createKey(`${environment}/app:encrypt`)),
    );
    const envelope = createEnvelopeService({ keyTree: tree });
    cache.clear();

    // Every master is cold, so the first requests for each unwrap it through the root at once.
    const keys = await Promise.all(
      Array.from({ length: PARALLEL_TREE }, (_, index) =>
        envelope.generateDataKey(
          `${environments[index % environments.length]}/app:encrypt`,
          {},
          ALL,
        ),
      ),
    );
    cache.clear();
    const decrypted = await Promise.all(
      keys.map((key) => envelope.decryptDataKey(key.wrappedDataKey, {}, ALL)),
    );

    decrypted.forEach((key, index) => assert.deepEqual(key.plaintext, keys[index]!.plaintext));
    assert.equal(harness.logger.entries.filter((entry) => entry.level === "error").length, 0);
  });

  void test("moved or tampered master blob is STORED_KEY_CORRUPT", async () => {
    harness = await openPkcs11Tree();
    const { tree, cache, storage, logger } = harness;
    const prod = await tree.createKey("prod");
    const stage = await tree.createKey("stage");
    await tree.rotate("prod");
    const material = async (keyId: string, version: number) => {
      const row = await storage.versions.find(keyId, version);
      return new Uint8Array(row!.material!);
    };
    const setMaterial = async (keyId: string, version: number, bytes: Uint8Array) => {
      await storage.db
        .updateTable("key_versions")
        .set({ material: bytes })
        .where("key_id", "=", keyId)
        .where("version", "=", version)
        .execute();
      cache.clear();
    };
    const open = async (keyId: string, version: number) => {
      const key = await tree.resolveKey(keyId);
      const row = await storage.versions.find(keyId, version);
      return tree.withMaterial({ key, version: row! }, (bytes) => Buffer.from(bytes));
    };
    const prodV1 = await material(prod.id, 1);
    const stageV1 = await material(stage.id, 1);

    // Another key id in the AAD.
    await setMaterial(stage.id, 1, prodV1);
    const moved = await assertArborError(
      open(stage.id, 1),
      "STORED_KEY_CORRUPT",
      /stored key stage version 1 could not be opened: the root could not unwrap it/,
    );
    assert.equal(moved.status, 500);
    await setMaterial(stage.id, 1, stageV1);
    await open(stage.id, 1);

    // Another version of the same key in the AAD.
    await setMaterial(prod.id, 2, prodV1);
    await assertArborError(open(prod.id, 2), "STORED_KEY_CORRUPT", /prod version 2/);

    // A flipped byte.
    const tampered = Uint8Array.from(prodV1);
    tampered[20] = tampered[20]! ^ 0x01;
    await setMaterial(prod.id, 1, tampered);
    await assertArborError(open(prod.id, 1), "STORED_KEY_CORRUPT", /prod version 1/);

    const treeErrors = logger.entries.filter(
      (entry) => entry.message === "stored key version failed to open",
    );
    assert.deepEqual(
      treeErrors.map((entry) => [entry.details.keyId, entry.details.version]),
      [
        [stage.id, 1],
        [prod.id, 2],
        [prod.id, 1],
      ],
    );
    const rootErrors = logger.entries.filter((entry) =>
      /failed to unwrap under the PKCS#11 root/.test(entry.message),
    );
    assert.equal(rootErrors.length, 3);
    assert.ok(rootErrors.every((entry) => entry.details.rootVersion === 1));
  });
});
