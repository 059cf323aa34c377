import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";

import { sql } from "kysely";

import { createCheckpointer, type Checkpointer } from "../../src/audit/checkpointer.ts";
import { checkCompleteness } from "../../src/audit/completeness.ts";
import { GroupCommitter } from "../../src/audit/group-commit.ts";
import { auditKeyChanges } from "../../src/audit/key-events.ts";
import { createAuditLogStore, type AuditLogStore } from "../../src/audit/log-store.ts";
import { verifyProofFile } from "../../src/audit/proof.ts";
import { MerkleFrontier } from "../../src/audit/merkle.ts";
import { createRetention } from "../../src/audit/retention.ts";
import { createSqlAuditWriter, type SqlAuditWriter } from "../../src/audit/sql-writer.ts";
import { buildProof, establishes, traceSubject } from "../../src/audit/trace.ts";
import { verifyAuditLog } from "../../src/audit/verify.ts";
import { createKeyTree, MaterialCache, type KeyTree } from "../../src/hierarchy/index.ts";
import type { JsonWebKey } from "node:crypto";
import { dialects } from "../helpers/dialects.ts";
import { event } from "./events.ts";
import { openTree, type TreeHarness } from "../helpers/tree.ts";

for (const dialect of dialects) {
  describe(`chained audit log on ${dialect.name}`, { skip: dialect.skip }, () => {
    let h: TreeHarness;
    let writer: SqlAuditWriter;
    let store: AuditLogStore;
    let checkpointer: Checkpointer;
    let tree: KeyTree;
    let publicKey: JsonWebKey;

    beforeEach(async () => {
      h = await openTree(dialect);
      writer = createSqlAuditWriter(new GroupCommitter(h.storage));
      store = createAuditLogStore(h.storage.db);
      checkpointer = createCheckpointer({
        storage: h.storage,
        store,
        root: h.root,
        clock: h.clock,
        logger: { error: () => undefined },
      });
      // A tree whose key changes are audited in their own transaction, as the server wires it.
      tree = createKeyTree({
        storage: h.storage,
        root: h.root,
        clock: h.clock,
        cache: new MaterialCache({ clock: h.clock, maxEntries: 10, ttlMs: 60_000 }),
        logger: h.logger,
        onChange: auditKeyChanges(writer),
      });
      publicKey = await h.root.checkpointPublicKey();
    });
    afterEach(() => h.close());

    async function writeMany(count: number): Promise<void> {
      await Promise.all(
        Array.from({ length: count }, (_, i) => writer.write(event({ requestId: `req-${i}` }))),
      );
    }

    async function verify(externals: Parameters<typeof verifyAuditLog>[2] = {}) {
      return verifyAuditLog(store, publicKey, externals);
    }

    test("concurrent writes get gapless sequence numbers and a valid chain", async () => {
      await writeMany(300);
      const rows = await store.records(0, 1_000);
      assert.deepEqual(
        rows.map((row) => row.seq),
        Array.from({ length: 300 }, (_, i) => i + 1),
      );
      for (let i = 1; i < rows.length; i++) assert.equal(rows[i]!.prevHash, rows[i - 1]!.hash);
      const report = await verify();
      assert.equal(report.ok, true, JSON.stringify(report.damage));
      assert.equal(report.records, 300);
    });

    test("a removed newest record stops the writer", async () => {
      const alerts: string[] = [];
      const guarded = createSqlAuditWriter(new GroupCommitter(h.storage), {
        onTamper: (message) => alerts.push(message),
      });
      for (let i = 0; i < 3; i++) await guarded.write(event({ requestId: `req-${i}` }));
      await h.storage.db.deleteFrom("audit_events").where("seq", "=", 3).execute();
      await assert.rejects(guarded.write(event()), { code: "AUDIT_UNAVAILABLE" });
      await assert.rejects(guarded.write(event()), { code: "AUDIT_UNAVAILABLE" });
      assert.equal(alerts.length, 1);
      assert.match(alerts[0]!, /wrote record 3, and the log now ends at 2/);
      const rows = await store.records(0, 10);
      assert.equal(rows.length, 2, "the gap was not filled");
    });

    test("a changed newest record stops the writer", async () => {
      const guarded = createSqlAuditWriter(new GroupCommitter(h.storage));
      for (let i = 0; i < 3; i++) await guarded.write(event({ requestId: `req-${i}` }));
      await sql`update audit_events set hash = ${"ab".repeat(32)} where seq = 3`.execute(
        h.storage.db,
      );
      await assert.rejects(guarded.write(event()), { code: "AUDIT_UNAVAILABLE" });
    });

    test("checkpoints are signed, chained and verified", async () => {
      await writeMany(10);
      const first = await checkpointer.checkpoint();
      assert.equal(first?.body.treeSize, 10);
      assert.equal(await checkpointer.checkpoint(), null, "nothing new: no second checkpoint");
      await writeMany(5);
      const second = await checkpointer.checkpoint();
      // 10 records, the first checkpoint's own record, then 5 more.
      assert.equal(second?.body.treeSize, 16);
      assert.equal(second?.body.prevTreeSize, 10);
      const report = await verify();
      assert.equal(report.ok, true, JSON.stringify(report.damage));
      assert.equal(report.checkpointsVerified, 2);
    });

    test("a record changed in place is reported as modified", async () => {
      await writeMany(20);
      await checkpointer.checkpoint();
      await sql`update audit_events set record = replace(record, '"req-7"', '"req-X"') where seq = 8`.execute(
        h.storage.db,
      );
      const report = await verify();
      assert.deepEqual(
        [report.ok, report.damage?.kind, report.damage?.seq],
        [false, "modified", 8],
      );
    });

    test("an indexed column changed without its record is reported as modified", async () => {
      await writeMany(5);
      await sql`update audit_events set key_id = 'key_forged' where seq = 3`.execute(h.storage.db);
      const report = await verify();
      assert.deepEqual([report.damage?.kind, report.damage?.seq], ["modified", 3]);
    });

    test("every indexed column is compared with its record", async () => {
      await writeMany(6);
      const edits = [
        sql`update audit_events set request_id = 'req-other' where seq = 2`,
        sql`update audit_events set source_address = '10.0.0.9' where seq = 3`,
        sql`update audit_events set error_code = 'FORBIDDEN' where seq = 4`,
        sql`update audit_events set chain = '["root@9"]' where seq = 5`,
        sql`update audit_events set details = '{"x":1}' where seq = 6`,
      ];
      for (const [index, edit] of edits.entries()) {
        await edit.execute(h.storage.db);
        const report = await verify();
        assert.deepEqual([report.damage?.kind, report.damage?.seq], ["modified", index + 2]);
        // Start a fresh log, so the next edit is the only damage. A new writer is needed: the
        // old one refuses to write after its records disappeared.
        await sql`delete from audit_events`.execute(h.storage.db);
        writer = createSqlAuditWriter(new GroupCommitter(h.storage));
        await writeMany(6);
      }
    });

    test("a rewritten record with a recomputed hash breaks the chain", async () => {
      await writeMany(5);
      const [row] = await store.records(1, 1);
      const { buildRecord, parseRecord, recordHash, canonicalRecordBytes } =
        await import("../../src/audit/record.ts");
      const record = parseRecord(row!.record!);
      const forged = buildRecord(
        { ...record, requestId: "req-forged" },
        record.seq,
        record.prevHash,
      );
      await h.storage.db
        .updateTable("audit_events")
        .set({
          record: Buffer.from(canonicalRecordBytes(forged)).toString("utf8"),
          hash: recordHash(forged),
          request_id: "req-forged",
        })
        .where("seq", "=", 2)
        .execute();
      const report = await verify();
      assert.deepEqual([report.damage?.kind, report.damage?.seq], ["modified", 3]);
    });

    test("a deleted record is reported as deleted", async () => {
      await writeMany(10);
      await h.storage.db.deleteFrom("audit_events").where("seq", "=", 4).execute();
      const report = await verify();
      assert.deepEqual([report.damage?.kind, report.damage?.seq], ["deleted", 4]);
    });

    test("swapped records are reported as reordered", async () => {
      await writeMany(10);
      await sql`update audit_events set seq = -1 where seq = 5`.execute(h.storage.db);
      await sql`update audit_events set seq = 5 where seq = 6`.execute(h.storage.db);
      await sql`update audit_events set seq = 6 where seq = -1`.execute(h.storage.db);
      const report = await verify();
      assert.deepEqual([report.damage?.kind, report.damage?.seq], ["reordered", 5]);
    });

    test("a truncated tail is caught by a stored checkpoint", async () => {
      await writeMany(10);
      await checkpointer.checkpoint();
      await h.storage.db.deleteFrom("audit_events").where("seq", ">", 8).execute();
      const report = await verify();
      assert.deepEqual([report.damage?.kind, report.damage?.seq], ["truncated", 9]);
    });

    test("truncation with the checkpoints deleted is caught by an exported checkpoint", async () => {
      await writeMany(10);
      const exported = await checkpointer.checkpoint();
      await h.storage.db.deleteFrom("audit_events").where("seq", ">", 8).execute();
      await h.storage.db.deleteFrom("audit_checkpoints").execute();
      assert.equal((await verify()).ok, true, "without the export the shorter log looks whole");
      const report = await verify({ externalCheckpoints: [exported!] });
      assert.deepEqual([report.damage?.kind, report.damage?.seq], ["truncated", 9]);
    });

    test("a deleted checkpoint is reported as missing", async () => {
      await writeMany(4);
      await checkpointer.checkpoint();
      await writeMany(4);
      await checkpointer.checkpoint();
      await writeMany(4);
      await checkpointer.checkpoint();
      await h.storage.db.deleteFrom("audit_checkpoints").where("tree_size", "=", 9).execute();
      const report = await verify();
      assert.equal(report.damage?.kind, "checkpoint_missing", JSON.stringify(report.damage));
    });

    test("a checkpoint with a forged signature or root is reported as forged", async () => {
      await writeMany(6);
      const signed = await checkpointer.checkpoint();
      const forged = { ...signed!, body: { ...signed!.body, rootHash: "ab".repeat(32) } };
      await h.storage.db
        .updateTable("audit_checkpoints")
        .set({ signed: JSON.stringify(forged), root_hash: forged.body.rootHash })
        .where("tree_size", "=", 6)
        .execute();
      const report = await verify();
      assert.deepEqual([report.damage?.kind, report.damage?.seq], ["checkpoint_forged", 6]);
    });

    test("retention prunes to a checkpoint and the rest still verifies", async () => {
      await writeMany(50);
      await checkpointer.checkpoint();
      await writeMany(20);
      const retention = createRetention({
        storage: h.storage,
        store,
        clock: h.clock,
        exporters: () => [],
      });
      assert.equal(await retention.prune(49), null, "only checkpoint sizes can be pruned to");
      const result = await retention.prune(50);
      assert.equal(result?.removed, 50);
      const [first] = await store.records(0, 1);
      assert.equal(first?.seq, 51);
      await writeMany(5);
      await checkpointer.checkpoint();
      const report = await verify();
      assert.equal(report.ok, true, JSON.stringify(report.damage));
      assert.equal(report.firstSeq, 51);

      // Damage after pruning is still caught.
      await h.storage.db.deleteFrom("audit_events").where("seq", "=", 60).execute();
      assert.equal((await verify()).damage?.kind, "deleted");
    });

    test("a prefix removed around retention is reported as deleted", async () => {
      await writeMany(12);
      await checkpointer.checkpoint();
      await writeMany(3);
      // Forge what retention leaves behind, without its audit.pruned record.
      const frontier = new MerkleFrontier();
      const hashes = await store.hashes(0, 12);
      for (const { hash } of hashes) frontier.append(Buffer.from(hash, "hex"));
      await h.storage.db
        .insertInto("audit_anchor")
        .values({
          id: 1,
          pruned_through: 12,
          last_hash: hashes.at(-1)!.hash,
          frontier: JSON.stringify(frontier.toJSON()),
          at: h.clock.now(),
        })
        .execute();
      await h.storage.db.deleteFrom("audit_events").where("seq", "<=", 12).execute();
      const report = await verify();
      assert.deepEqual([report.damage?.kind, report.damage?.seq], ["deleted", 1]);
    });

    test("retention keeps what an exporter has not delivered", async () => {
      await writeMany(10);
      await checkpointer.checkpoint();
      await store.setCursor("siem", 4, h.clock.now());
      const retention = createRetention({
        storage: h.storage,
        store,
        clock: h.clock,
        exporters: () => ["siem"],
      });
      await assert.rejects(retention.prune(10), /exporter siem has delivered records only up to 4/);
      assert.equal((await store.records(0, 100)).length, 11, "nothing was pruned");
    });

    test("key changes are recorded in their own transaction and trace to the root", async () => {
      await tree.createKey("prod");
      const service = await tree.createKey("prod/payments:encrypt");
      await tree.rotate("prod/payments:encrypt");
      const trace = await traceSubject(store, `${service.id}@2`);
      const refs = trace.steps.map((step) => step.ref);
      assert.equal(refs.length, 3, JSON.stringify(trace.steps));
      assert.equal(refs[0], "root@1");
      assert.equal(refs[2], `${service.id}@2`);
      assert.equal(trace.steps[2]!.type, "key.rotated");
      // root@1 was created outside this tree's audit wiring, so the trace says so.
      assert.equal(trace.steps[0]!.seq, null);
      assert.ok(trace.steps[1]!.seq! < trace.steps[2]!.seq!);
    });

    test("a failed key change leaves neither the key nor its record", async () => {
      await tree.createKey("prod");
      const before = (await store.records(0, 100)).length;
      await assert.rejects(tree.createKey("prod"), /in use|exists/i);
      assert.equal((await store.records(0, 100)).length, before);
    });

    test("a proof verifies offline and fails after any byte changes", async () => {
      await writer.write(
        event({
          type: "sys.initialized",
          details: { rootVersion: 1 },
        }),
      );
      await tree.createKey("prod");
      const key = await tree.createKey("prod/app:encrypt");
      const master = await tree.resolveKey("prod");
      await writer.write(
        event({
          type: "data_key.issued",
          keyId: key.id,
          keyVersion: 1,
          chain: ["root@1", `${master.id}@1`, `${key.id}@1`],
          credentialId: "dk_proofproofproofproofproofp",
        }),
      );
      await writeMany(30);
      await assert.rejects(
        buildProof(store, await traceSubject(store, "dk_proofproofproofproofproofp")),
        {
          code: "AUDIT_PROOF_UNAVAILABLE",
        },
      );
      await checkpointer.checkpoint();
      const trace = await traceSubject(store, "dk_proofproofproofproofproofp");
      assert.deepEqual(
        trace.steps.map((s) => s.kind),
        ["root", "key", "key", "credential"],
      );
      const proof = await buildProof(store, trace);
      assert.equal(proof.entries.length, 4, "the proof carries the trace's records only");
      const text = JSON.stringify(proof);
      assert.equal(text.includes("req-29"), false, "no other record is revealed");
      const valid = verifyProofFile(text, publicKey);
      assert.equal(valid.ok, true, JSON.stringify(valid));

      const bytes = Buffer.from(text, "utf8");
      let rejected = 0;
      let changed = 0;
      for (let i = 0; i < bytes.length; i++) {
        const copy = Buffer.from(bytes);
        copy[i] = copy[i]! ^ 0x01;
        changed++;
        if (!verifyProofFile(copy.toString("utf8"), publicKey).ok) rejected++;
      }
      assert.equal(rejected, changed, `${changed - rejected} single-byte changes still verified`);
      assert.ok(establishes);
    });

    test("a proof after retention verifies against the pruned prefix", async () => {
      await writer.write(event({ type: "sys.initialized", details: { rootVersion: 1 } }));
      await writeMany(40);
      await checkpointer.checkpoint();
      const retention = createRetention({
        storage: h.storage,
        store,
        clock: h.clock,
        exporters: () => [],
      });
      const pruneTo = (await store.latestCheckpoint())!.treeSize;
      // The root's record is pruned, so the proof starts from a key version instead.
      await tree.createKey("prod");
      const key = await tree.createKey("prod/app:encrypt");
      await retention.prune(pruneTo);
      await writeMany(10);
      await checkpointer.checkpoint();
      const master = await tree.resolveKey("prod");
      const trace = await traceSubject(store, `${key.id}@1`);
      assert.deepEqual(
        trace.steps.map((s) => s.ref),
        ["root@1", `${master.id}@1`, `${key.id}@1`],
      );
      await assert.rejects(buildProof(store, trace), { code: "AUDIT_PROOF_UNAVAILABLE" });
      const masterTrace = { ...trace, subject: `${key.id}@1`, steps: trace.steps.slice(1) };
      const proof = await buildProof(store, masterTrace);
      assert.ok(proof.entries.every((entry) => entry.leafIndex >= pruneTo));
    });

    test("completeness matches issuances and their records", async () => {
      await tree.createKey("prod");
      const key = await tree.createKey("prod/app:encrypt");
      for (const id of ["dk_a", "dk_b", "dk_c"]) {
        await writer.write(
          event({
            type: "data_key.issued",
            keyId: key.id,
            keyVersion: 1,
            chain: [`${key.id}@1`],
            credentialId: id,
          }),
        );
      }
      assert.equal((await checkCompleteness(h.storage.db)).complete, true);
      await h.storage.db.deleteFrom("audit_events").where("credential_id", "=", "dk_b").execute();
      const report = await checkCompleteness(h.storage.db);
      assert.equal(report.complete, false);
      assert.deepEqual(report.missingRecords, ["dk_b"]);
    });
  });
}
