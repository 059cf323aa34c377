import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, describe, test } from "node:test";

import { createEnvelopeService } from "../../../src/envelope/service.ts";
import {
  createKeyTree,
  MaterialCache,
  ROOT_REWRAPPED_TOPIC,
  type KeyScope,
} from "../../../src/hierarchy/index.ts";
import { pkcs11js } from "../../../src/root/pkcs11/calls.ts";
import { assertArborError } from "../helpers.ts";
import {
  booleanAttributes,
  findObjects,
  openPkcs11Tree,
  withTokenSession,
  type Pkcs11TreeHarness,
} from "./helpers.ts";
import { softhsmSkip } from "./softhsm.ts";

const ALL: KeyScope = { environment: null, tenant: null };
const CHILD = fileURLToPath(new URL("./rewrap-child.ts", import.meta.url));
const REPOSITORY = fileURLToPath(new URL("../../../", import.meta.url));
const PAUSE_AFTER = 5;

interface ChildRun {
  lines: Record<string, unknown>[];
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/**
 * Runs the re-wrap in a child process. With `killWhenPaused`, the child stops after
 * PAUSE_AFTER versions and is killed with SIGKILL as soon as it reports the pause.
 */
function runChild(harness: Pkcs11TreeHarness, killWhenPaused: boolean): Promise<ChildRun> {
  const child = spawn(process.execPath, ["--import", "tsx", CHILD], {
    cwd: REPOSITORY,
    env: {
      ...process.env,
      ARBOR_TEST_DB: harness.file,
      ARBOR_TEST_TOKEN_LABEL: harness.token.label,
      ARBOR_PKCS11_PIN: harness.token.pin,
      ARBOR_TEST_PAUSE_AFTER: killWhenPaused ? String(PAUSE_AFTER) : "0",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: Record<string, unknown>[] = [];
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  createInterface({ input: child.stdout }).on("line", (line) => {
    const parsed = JSON.parse(line) as Record<string, unknown>;
    lines.push(parsed);
    if (parsed.paused === true && killWhenPaused) child.kill("SIGKILL");
  });
  return new Promise((resolve) => {
    child.on("close", (code, signal) => resolve({ lines, code, signal, stderr }));
  });
}

void describe("root rotation on the PKCS#11 root", { skip: softhsmSkip }, () => {
  let harness: Pkcs11TreeHarness | null = null;

  afterEach(async () => {
    await harness?.close();
    harness = null;
  });

  void test("re-wrap killed with SIGKILL finishes on the next run", async () => {
    harness = await openPkcs11Tree();
    const { tree, storage, root, clock, logger } = harness;
    const environments = Array.from({ length: 12 }, (_, index) => `env${index}`);
    for (const environment of environments) {
      await tree.createKey(environment);
      await tree.createKey(`${environment}/app:encrypt`);
    }
    for (const environment of environments.slice(0, 6)) await tree.rotate(environment);
    await tree.createKey("env0/acme");
    await tree.createKey("env0/acme/billing:encrypt");
    const envelope = createEnvelopeService({ keyTree: tree });
    const payload = new TextEncoder().encode("encrypted before the root rotation");
    const sealed = await envelope.encrypt("env0/acme/billing:encrypt", payload, { a: "b" }, ALL);
    const mastersBefore = await masterRows(harness);
    assert.equal(mastersBefore.length, 18, "12 environment masters, 6 of them rotated");
    const [rootV1] = await root.listVersions();

    await root.rotate();
    const killed = await runChild(harness, true);

    assert.equal(killed.signal, "SIGKILL", killed.stderr);
    assert.deepEqual(killed.lines.at(-1), { paused: true });
    const midway = await masterRows(harness);
    assert.equal(midway.filter((row) => row.parent_version === 2).length, PAUSE_AFTER);
    assert.equal(midway.filter((row) => row.parent_version === 1).length, 18 - PAUSE_AFTER);

    const finished = await runChild(harness, false);

    assert.equal(finished.code, 0, finished.stderr);
    assert.deepEqual(finished.lines.at(-1), {
      result: { rootVersion: 2, rewrapped: 18 - PAUSE_AFTER, skipped: 0, disabledVersions: [1] },
    });
    const after = await masterRows(harness);
    assert.ok(after.every((row) => row.parent_version === 2));
    const outbox = await storage.outbox.readAfter(0, 1000);
    assert.equal(outbox.filter((row) => row.topic === ROOT_REWRAPPED_TOPIC).length, 18);

    // Every master version opens under root version 2 through a cold cache, with the same key.
    const cache = new MaterialCache({ clock, maxEntries: 100, ttlMs: 60_000 });
    const fresh = createKeyTree({ storage, root, clock, cache, logger });
    for (const row of mastersBefore) {
      const key = await fresh.resolveKey(row.key_id);
      const version = await storage.versions.find(row.key_id, row.version);
      const material = await fresh.withMaterial({ key, version: version! }, (bytes) =>
        Buffer.from(bytes),
      );
      assert.deepEqual(material, row.plaintext, `${key.path} v${row.version} is unchanged`);
    }
    const opened = await createEnvelopeService({ keyTree: fresh }).decrypt(
      sealed.ciphertext,
      { a: "b" },
      ALL,
    );
    assert.deepEqual(opened.plaintext, payload);

    // The old root key is disabled on the token, not deleted, and old blobs no longer open.
    const p = pkcs11js();
    const flags = withTokenSession(harness.token.label, harness.token.pin, (calls, session) => {
      const found = findObjects(calls, session, [
        { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
        { type: p.CKA_LABEL, value: rootV1!.keyLabel },
      ]);
      assert.equal(found.length, 1, "the old root key still exists");
      return booleanAttributes(calls, session, found[0]!, ["CKA_ENCRYPT", "CKA_DECRYPT"]);
    });
    assert.deepEqual(flags, { CKA_ENCRYPT: false, CKA_DECRYPT: false });
    const [v1] = await root.listVersions();
    assert.notEqual(v1?.disabledAt, null);
    await assertArborError(
      root.unwrap({ rootVersion: 1, ciphertext: mastersBefore[0]!.material }, new Uint8Array()),
      "STORED_KEY_CORRUPT",
      /root version 1 failed to unwrap/,
    );
  });
});

/** Root-wrapped master versions with their material and, through the tree, their plaintext. */
async function masterRows(harness: Pkcs11TreeHarness) {
  const rows = await harness.storage.db
    .selectFrom("key_versions")
    .select(["key_id", "version", "parent_version", "material"])
    .where("parent_key_id", "is", null)
    .orderBy("key_id")
    .orderBy("version")
    .execute();
  const result = [];
  for (const row of rows) {
    const key = await harness.tree.resolveKey(row.key_id);
    const version = await harness.storage.versions.find(row.key_id, row.version);
    const plaintext = await harness.tree.withMaterial({ key, version: version! }, (bytes) =>
      Buffer.from(bytes),
    );
    result.push({ ...row, material: new Uint8Array(row.material!), plaintext });
  }
  return result;
}
