import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { GroupCommitter } from "../../src/audit/group-commit.ts";
import { createSqlAuditWriter } from "../../src/audit/sql-writer.ts";
import { isArborError } from "../../src/errors/index.ts";
import { createPolicyStore, PolicyEngine, type PolicyStore } from "../../src/policy/index.ts";
import { createPolicyRepository } from "../../src/storage/repositories/policies.ts";
import type { Storage } from "../../src/storage/index.ts";
import { FakeClock } from "../helpers/clock.ts";
import { dialects } from "../helpers/dialects.ts";

const ROOT = { id: "opt_root" };
const FORBID_ROTATE = `forbid (principal, action == Arbor::Action::"key.rotate", resource);`;
const PERMIT_READ = `permit (principal, action == Arbor::Action::"key.read", resource);`;

async function withStore(
  work: (
    store: PolicyStore,
    storage: Storage,
    clock: FakeClock,
    engine: PolicyEngine,
  ) => Promise<void>,
  options: { failAudit?: boolean } = {},
): Promise<void> {
  const opened = await dialects[0]!.open();
  try {
    const clock = new FakeClock();
    const writer = createSqlAuditWriter(new GroupCommitter(opened.storage));
    const engine = new PolicyEngine({ cacheTtlMs: 0 });
    const store = createPolicyStore({
      storage: opened.storage,
      engine,
      clock,
      audit: {
        writeInTransaction: async (trx, event) => {
          if (options.failAudit === true) throw new Error("audit store switched off by the test");
          await writer.writeInTransaction(trx, event);
        },
      },
      logger: { error: () => {} },
    });
    await store.reload();
    await work(store, opened.storage, clock, engine);
  } finally {
    await opened.close();
  }
}

describe("policy store", () => {
  test("versions are kept and deletion is a version", async () => {
    await withStore(async (store, _storage, clock, engine) => {
      const first = await store.apply(ROOT, "ops", FORBID_ROTATE);
      assert.deepEqual([first.changed, first.policy.version], [true, 1]);
      clock.advance(1000);
      const second = await store.apply(ROOT, "ops", PERMIT_READ);
      assert.equal(second.policy.version, 2);
      assert.equal(engine.policies().filter((policy) => policy.source === "stored").length, 1);

      const same = await store.apply(ROOT, "ops", PERMIT_READ);
      assert.deepEqual([same.changed, same.policy.version], [false, 2]);

      const removed = await store.remove(ROOT, "ops");
      assert.deepEqual([removed.version, removed.deleted], [3, true]);
      assert.deepEqual(await store.current(), []);
      assert.equal(
        engine.policies().some((policy) => policy.source === "stored"),
        false,
      );

      const history = await store.history("ops");
      assert.deepEqual(
        history.map((version) => [version.version, version.deleted, version.text]),
        [
          [1, false, FORBID_ROTATE],
          [2, false, PERMIT_READ],
          [3, true, ""],
        ],
      );
    });
  });

  test("dry run stores nothing", async () => {
    await withStore(async (store) => {
      const outcome = await store.apply(ROOT, "ops", FORBID_ROTATE, { dryRun: true });
      assert.deepEqual([outcome.dryRun, outcome.changed, outcome.policy.version], [true, true, 1]);
      assert.deepEqual(await store.current(), []);
    });
  });

  test("change rolls back without its audit event", async () => {
    await withStore(
      async (store, storage) => {
        await assert.rejects(store.apply(ROOT, "ops", FORBID_ROTATE), /switched off/);
        assert.deepEqual(await store.current(), []);
        const outbox = await storage.db.selectFrom("outbox").selectAll().execute();
        assert.deepEqual(outbox, []);
        assert.equal(await createPolicyRepository(storage.db).generation(), 0);
      },
      { failAudit: true },
    );
  });

  test("change writes its event, outbox row and generation", async () => {
    await withStore(async (store, storage) => {
      await store.apply(ROOT, "ops", FORBID_ROTATE);
      const events = await storage.db
        .selectFrom("audit_events")
        .select(["type", "details"])
        .where("type", "=", "policy.changed")
        .execute();
      assert.equal(events.length, 1);
      assert.deepEqual(
        (({ change, name, version }) => ({ change, name, version }))(
          JSON.parse(events[0]!.details),
        ),
        { change: "applied", name: "ops", version: 1 },
      );
      const outbox = await storage.db.selectFrom("outbox").select("topic").execute();
      assert.deepEqual(
        outbox.map((row) => row.topic),
        ["policy.changed"],
      );
      assert.equal(await createPolicyRepository(storage.db).generation(), 1);
    });
  });

  test("another process picks up changes", async () => {
    await withStore(async (store, storage, clock) => {
      const otherEngine = new PolicyEngine({ cacheTtlMs: 0 });
      const other = createPolicyStore({
        storage,
        engine: otherEngine,
        clock,
        audit: { writeInTransaction: () => Promise.resolve() },
        logger: { error: () => {} },
      });
      await other.reload();
      assert.equal(await other.refreshIfChanged(), false);

      await store.apply(ROOT, "ops", FORBID_ROTATE);
      assert.equal(await other.refreshIfChanged(), true);
      assert.ok(otherEngine.policies().some((policy) => policy.id === "ops#1"));
    });
  });

  test("grants are validated", async () => {
    await withStore(async (store, storage) => {
      await storage.operatorTokens.insert({
        id: "opt_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        secret_hash: new Uint8Array(32),
        name: "root",
        environment: null,
        tenant: null,
        read_only: 0,
        is_root: 1,
        created_at: 0,
        expires_at: null,
        revoked_at: null,
        created_by: null,
      });
      const principalId = "opt_aaaaaaaaaaaaaaaaaaaaaaaaaa";
      const cases: Array<[Parameters<PolicyStore["createGrant"]>[1], string]> = [
        [
          { principalId, breakGlass: { environment: "prod" }, reason: "incident" },
          "INVALID_ARGUMENT",
        ],
        [
          {
            principalId,
            breakGlass: { environment: "prod" },
            ttlMs: 25 * 3_600_000,
            reason: "incident",
          },
          "INVALID_ARGUMENT",
        ],
        [
          { principalId, breakGlass: { environment: "*" }, ttlMs: 60_000, reason: "incident" },
          "INVALID_ARGUMENT",
        ],
        [
          { principalId, role: "auditor", breakGlass: { environment: "prod" }, reason: "both" },
          "INVALID_ARGUMENT",
        ],
        [{ principalId, role: "auditor", reason: "  " }, "INVALID_ARGUMENT"],
        [
          { principalId: "opt_bbbbbbbbbbbbbbbbbbbbbbbbbb", role: "auditor", reason: "nobody" },
          "NOT_FOUND",
        ],
      ];
      for (const [input, code] of cases) {
        await assert.rejects(
          store.createGrant(ROOT, input),
          (error: unknown) => isArborError(error, code as never),
          JSON.stringify(input),
        );
      }

      const grant = await store.createGrant(ROOT, {
        principalId,
        breakGlass: { environment: "prod", tenant: "acme" },
        ttlMs: 3_600_000,
        reason: "incident 7",
      });
      assert.equal(store.grants().breakGlassOf(principalId, grant.createdAt).length, 1);
      await store.revokeGrant(ROOT, grant.id);
      assert.equal(store.grants().breakGlassOf(principalId, grant.createdAt).length, 0);
    });
  });
});
