import assert from "node:assert/strict";
import type { JsonWebKey } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { createAuditLogStore, type AuditLogReader } from "../../src/audit/log-store.ts";
import { verifyAuditLog } from "../../src/audit/verify.ts";
import { keyParam, openComposedServer, type ComposedServer } from "./composed.ts";

const KEY = "live/app:encrypt";

describe("verification of a live log", () => {
  let server: ComposedServer;
  let publicKey: JsonWebKey;

  before(async () => {
    server = await openComposedServer();
    const key = await server.call<JsonWebKey>("GET", "/v1/audit/public-key");
    assert.equal(key.status, 200, key.text);
    publicKey = key.body;
    for (const path of ["live", KEY]) {
      const created = await server.call("POST", "/v1/keys", { path });
      assert.equal(created.status, 201, created.text);
    }
  });

  after(async () => {
    await server.close();
  });

  /** Issues data keys and signs a checkpoint after each, until `stop` is set. */
  async function keepWriting(state: { stop: boolean }): Promise<void> {
    while (!state.stop) {
      const issued = await server.call("POST", `/v1/keys/${keyParam(KEY)}/data-key`, {});
      assert.equal(issued.status, 200, issued.text);
      const signed = await server.call("POST", "/v1/audit/checkpoints", {});
      assert.equal(signed.status, 200, signed.text);
    }
  }

  test("checkpoints signed during verification are not missing", async () => {
    const store = createAuditLogStore(server.storage.db);
    const before = (await store.checkpoints()).length;
    // Pages of three, each read a little later, so checkpoints are signed between the first
    // read of the checkpoints and the read of the records that announce them.
    const slow: AuditLogReader = {
      anchor: () => store.anchor(),
      checkpoints: () => store.checkpoints(),
      latestSeq: () => store.latestSeq(),
      async records(afterSeq, limit) {
        await new Promise((resolve) => setTimeout(resolve, 15));
        return store.records(afterSeq, limit);
      },
    };

    const state = { stop: false };
    const writing = keepWriting(state);
    let report;
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      report = await verifyAuditLog(slow, publicKey, { pageSize: 3 });
    } finally {
      state.stop = true;
      await writing;
    }

    assert.equal(report.ok, true, JSON.stringify(report.damage));
    const signedMeanwhile = (await store.checkpoints()).length - before;
    assert.ok(signedMeanwhile > 2, `only ${signedMeanwhile} checkpoints were signed meanwhile`);
  });

  test("newest checkpoint deleted is still missing", async () => {
    const signed = await server.call<{ treeSize: number }>("POST", "/v1/audit/checkpoints", {});
    assert.equal(signed.status, 200, signed.text);
    // Something new, so that the deleted checkpoint's own record is not the last one.
    const issued = await server.call("POST", `/v1/keys/${keyParam(KEY)}/data-key`, {});
    assert.equal(issued.status, 200, issued.text);
    const newest = signed.body.treeSize;
    await server.storage.db
      .deleteFrom("audit_checkpoints")
      .where("tree_size", "=", newest)
      .execute();

    const report = await verifyAuditLog(createAuditLogStore(server.storage.db), publicKey);
    assert.equal(report.damage?.kind, "checkpoint_missing", JSON.stringify(report));
  });
});
