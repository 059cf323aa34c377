import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { GroupCommitter } from "../../src/audit/group-commit.ts";
import {
  canonicalRecordJson,
  checkHashChain,
  GENESIS_HASH,
  parseRecord,
  recordHash,
} from "../../src/audit/record.ts";
import { chainRecord, createSqlAuditWriter } from "../../src/audit/sql-writer.ts";
import type { AuditEvent } from "../../src/audit/types.ts";
import { isArborError } from "../../src/errors/index.ts";
import { dialects } from "../helpers/dialects.ts";
import { event } from "./events.ts";
import { openTree, type TreeHarness } from "../helpers/tree.ts";

for (const dialect of dialects) {
  describe(`audit writer on ${dialect.name}`, { skip: dialect.skip }, () => {
    let h: TreeHarness;
    before(async () => {
      h = await openTree(dialect);
      await h.tree.createKey("prod");
      await h.tree.createKey("prod/app:encrypt");
    });
    after(() => h.close());

    test("concurrent writes share transactions", async () => {
      let transactions = 0;
      const counting = {
        ...h.storage,
        write: (work: never) => (transactions++, h.storage.write(work)),
      };
      const writer = createSqlAuditWriter(new GroupCommitter(counting as never));
      await Promise.all(
        Array.from({ length: 200 }, (_, i) => writer.write(event({ requestId: `req-${i}` }))),
      );
      const rows = await h.storage.db.selectFrom("audit_events").select("request_id").execute();
      assert.equal(rows.filter((r) => r.request_id?.startsWith("req-")).length, 200);
      assert.ok(transactions < 20, `200 events took ${transactions} transactions`);
    });

    test("batch larger than one insert keeps every row", async () => {
      // A key of its own, so these issuances stay apart from the other tests' ones.
      await h.tree.createKey("prod/batch:encrypt");
      const key = await h.tree.resolveKey("prod/batch:encrypt");
      const before = await h.storage.db
        .selectFrom("audit_events")
        .select(["seq", "hash"])
        .orderBy("seq", "desc")
        .limit(1)
        .executeTakeFirstOrThrow();
      const writer = createSqlAuditWriter(new GroupCommitter(h.storage));
      // 41 events: more than two full insert statements and a remainder, in one batch.
      const ids = Array.from({ length: 41 }, (_, i) => `dk_batch_${String(i).padStart(2, "0")}`);
      await Promise.all(
        ids.map((id) =>
          writer.write(
            event({
              type: "data_key.issued",
              keyId: key.id,
              keyVersion: 1,
              credentialId: id,
              chain: ["root@1"],
            }),
          ),
        ),
      );

      const rows = await h.storage.db
        .selectFrom("audit_events")
        .select(["seq", "credential_id", "record"])
        .where("seq", ">", before.seq)
        .orderBy("seq")
        .execute();
      assert.equal(rows.length, ids.length);
      assert.deepEqual(rows.map((r) => r.credential_id).sort(), ids);
      const check = checkHashChain(
        rows.map((r) => parseRecord(r.record!)),
        { seq: Number(before.seq), hash: before.hash! },
      );
      assert.ok(check.ok, JSON.stringify(check));
      const live = await h.storage.issuances.liveByKeyVersion(key.id, 1, Date.UTC(2026, 0, 2));
      assert.deepEqual(live.map((r) => r.id).sort(), ids);
    });

    test("a failed batch releases no credential", async () => {
      const countBefore = (await h.storage.db.selectFrom("audit_events").select("seq").execute())
        .length;
      const writer = createSqlAuditWriter(new GroupCommitter(h.storage));
      const results = await Promise.allSettled([
        writer.write(event({ requestId: "req-valid-1" })),
        writer.write(event({ details: { n: Number.NaN } })),
        writer.write(event({ requestId: "req-valid-2" })),
      ]);
      for (const result of results) {
        assert.equal(result.status, "rejected");
        assert.ok(isArborError(result.reason, "AUDIT_UNAVAILABLE"));
      }
      const countAfter = (await h.storage.db.selectFrom("audit_events").select("seq").execute())
        .length;
      assert.equal(countAfter, countBefore, "no row of the failed batch was kept");
    });

    test("data key issuance recorded with its event", async () => {
      const key = await h.tree.resolveKey("prod/app:encrypt");
      const writer = createSqlAuditWriter(new GroupCommitter(h.storage));
      await writer.write(
        event({
          type: "data_key.issued",
          keyId: key.id,
          keyVersion: 1,
          credentialId: "dk_aaaaaaaaaaaaaaaaaaaaaaaaaa",
          chain: ["root@1"],
        }),
      );
      const live = await h.storage.issuances.liveByKeyVersion(key.id, 1, Date.UTC(2026, 0, 2));
      assert.deepEqual(
        live.map((r) => r.id),
        ["dk_aaaaaaaaaaaaaaaaaaaaaaaaaa"],
      );
      assert.equal(live[0]!.principal, "operator:opt_test");
    });

    test("unwritable store gives AUDIT_UNAVAILABLE", async () => {
      const broken = { ...h.storage, write: () => Promise.reject(new Error("disk I/O error")) };
      const writer = createSqlAuditWriter(new GroupCommitter(broken as never));
      const results = await Promise.allSettled([writer.write(event()), writer.write(event())]);
      for (const result of results) {
        assert.equal(result.status, "rejected");
        assert.ok(isArborError(result.reason, "AUDIT_UNAVAILABLE"));
      }
    });

    test("issuance without its key version is refused whole", async () => {
      const writer = createSqlAuditWriter(new GroupCommitter(h.storage));
      const before = await h.storage.db.selectFrom("audit_events").select("seq").execute();
      await assert.rejects(
        writer.write(event({ type: "data_key.issued", credentialId: "dk_x" })),
        (error: unknown) => isArborError(error, "AUDIT_UNAVAILABLE"),
      );
      const afterRows = await h.storage.db.selectFrom("audit_events").select("seq").execute();
      assert.equal(
        afterRows.length,
        before.length,
        "the event rolled back with the missing record",
      );
    });
  });
}

describe("chainRecord", () => {
  test("canonical text and hash match record.ts", () => {
    const cases: Array<[string, AuditEvent]> = [
      ["plain event", event()],
      [
        "unicode, large and negative numbers",
        event({
          principal: { type: "service", id: "svc_\u00e9\u{1f511}" },
          details: { z: 1e21, a: -0, m: 0.1, note: "\u2028 line separator", empty: "" },
        }),
      ],
      [
        "issuance with chain and a __proto__ detail",
        event({
          type: "token.issued",
          keyId: "key_a",
          keyVersion: 3,
          credentialId: "tok_a",
          chain: ["root@1", "key_b@2", "key_a@3"],
          details: JSON.parse(
            '{"__proto__": "x", "expiresAt": 1900000000000}',
          ) as AuditEvent["details"],
        }),
      ],
    ];
    let tail = { seq: 0, hash: GENESIS_HASH };
    for (const [name, input] of cases) {
      const chained = chainRecord(input, tail);
      assert.equal(chained.record.seq, tail.seq + 1, name);
      assert.equal(chained.record.prevHash, tail.hash, name);
      assert.equal(chained.canonical, canonicalRecordJson(chained.record), name);
      assert.equal(chained.hash, recordHash(chained.record), name);
      assert.equal(recordHash(parseRecord(chained.canonical)), chained.hash, name);
      tail = { seq: chained.record.seq, hash: chained.hash };
    }
  });
});
