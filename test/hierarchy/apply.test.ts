import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { parse } from "yaml";

import { isArborError } from "../../src/errors/index.ts";
import { applyHierarchy } from "../../src/hierarchy/index.ts";
import { dialects } from "../helpers/dialects.ts";
import { openTree, type TreeHarness } from "../helpers/tree.ts";

const example = parse(
  readFileSync(join(import.meta.dirname, "../../examples/hierarchy.yaml"), "utf8"),
) as unknown;

function rejectsWith(code: string, pattern: RegExp) {
  return (error: unknown) => {
    assert.ok(isArborError(error), String(error));
    assert.equal(error.code, code, error.message);
    assert.match(error.message, pattern);
    return true;
  };
}

for (const dialect of dialects) {
  describe(`apply on ${dialect.name}`, { skip: dialect.skip }, () => {
    let h: TreeHarness;
    before(async () => {
      h = await openTree(dialect);
    });
    after(() => h.close());

    test("dry run plans and changes nothing", async () => {
      const result = await applyHierarchy(h.tree, example, { dryRun: true });
      assert.equal(result.created.length, 0);
      assert.ok(result.plan.length > 20);
      assert.equal(result.plan[0]!.path, "prod");
      assert.deepEqual(await h.tree.listKeys(), []);
    });

    test("example file applies, and a second apply changes nothing", async () => {
      const first = await applyHierarchy(h.tree, example, { dryRun: false });
      assert.equal(first.created.length, first.plan.length);
      assert.deepEqual(first.drift, []);
      const ledger = await h.tree.getKey("prod/ledger:encrypt");
      assert.equal(ledger.mode, "derived");
      assert.equal(ledger.rotationPeriodMs, 90 * 86_400_000);
      assert.equal((await h.tree.getKey("prod/initech/billing:sign")).algorithm, "ES256");

      const outboxBefore = (await h.storage.outbox.readAfter(0, 100_000)).length;
      const second = await applyHierarchy(h.tree, example, { dryRun: false });
      assert.deepEqual(second.plan, []);
      assert.deepEqual(second.created, []);
      assert.deepEqual(second.drift, []);
      assert.equal(second.unchanged, first.plan.length);
      assert.equal((await h.storage.outbox.readAfter(0, 100_000)).length, outboxBefore);
    });

    test("drift is reported, never touched", async () => {
      await h.tree.createKey("prod/acme/extra:encrypt");
      const changed = structuredClone(example) as {
        environments: { prod: { services: { ledger: { encrypt: { mode: string } } } } };
      };
      changed.environments.prod.services.ledger.encrypt.mode = "wrapped";
      const result = await applyHierarchy(h.tree, changed, { dryRun: false });
      assert.deepEqual(result.created, []);
      assert.deepEqual(result.drift.map((d) => d.path).sort(), [
        "prod/acme/extra:encrypt",
        "prod/ledger:encrypt",
      ]);
      assert.match(
        result.drift.find((d) => d.path === "prod/ledger:encrypt")!.reason,
        /file says wrapped, key is derived/,
      );
      assert.equal((await h.tree.getKey("prod/ledger:encrypt")).mode, "derived");
      assert.equal((await h.tree.getKey("prod/acme/extra:encrypt")).versions[0]!.state, "primary");
    });

    test("bad hierarchy files are rejected whole", async () => {
      const before = (await h.tree.listKeys()).length;
      await assert.rejects(
        applyHierarchy(h.tree, { apiVersion: "arbor/v2" }, { dryRun: false }),
        rejectsWith("INVALID_ARGUMENT", /apiVersion/),
      );
      await assert.rejects(
        applyHierarchy(
          h.tree,
          { apiVersion: "arbor/v1", environments: { qa: { servics: {} } } },
          { dryRun: false },
        ),
        rejectsWith("UNSUPPORTED_FIELD", /"servics" in environments\.qa/),
      );
      await assert.rejects(
        applyHierarchy(
          h.tree,
          {
            apiVersion: "arbor/v1",
            environments: { qa: { services: { api: { encrypt: { mode: "magic" } } } } },
          },
          { dryRun: false },
        ),
        rejectsWith("INVALID_ARGUMENT", /environments\.qa\.services\.api\.encrypt\.mode "magic"/),
      );
      await assert.rejects(
        applyHierarchy(
          h.tree,
          { apiVersion: "arbor/v1", environments: { QA: {} } },
          { dryRun: false },
        ),
        rejectsWith("INVALID_ARGUMENT", /environments\.QA/),
      );
      await assert.rejects(
        applyHierarchy(
          h.tree,
          { apiVersion: "arbor/v1", environments: { qa: { rotation: "10s" } } },
          { dryRun: false },
        ),
        rejectsWith("INVALID_ARGUMENT", /at least one minute/),
      );
      await assert.rejects(
        applyHierarchy(
          h.tree,
          { apiVersion: "arbor/v1", policies: [{ allow: true }] },
          { dryRun: false },
        ),
        rejectsWith("INVALID_ARGUMENT", /reserved/),
      );
      assert.equal((await h.tree.listKeys()).length, before);
    });
  });
}
