import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";

import type { Insertable } from "kysely";

import { createOperatorTokenService, hashSecret } from "../../src/operators/index.ts";
import {
  constraintViolation,
  type OperatorTokensTable,
  type OutboxRow,
  type Storage,
} from "../../src/storage/index.ts";
import { dialects } from "../helpers/dialects.ts";
import {
  DAY_MS,
  HOUR_MS,
  expectArborError,
  mint,
  openOperators,
  type OperatorHarness,
} from "./helpers.ts";

/** Returns the same storage with an outbox whose appends fail, as when the disk fills mid-transaction. */
function withFailingOutbox(storage: Storage): Storage {
  return {
    ...storage,
    outbox: {
      ...storage.outbox,
      append: () => Promise.reject(new Error("outbox append failed")),
    },
  };
}

async function rejectedBy(kind: string, work: () => Promise<unknown>): Promise<void> {
  await assert.rejects(work, (error: unknown) => {
    assert.equal(
      constraintViolation(error),
      kind,
      `expected a ${kind} violation, got ${String(error)}`,
    );
    return true;
  });
}

for (const dialect of dialects) {
  void describe(`operator token outbox on ${dialect.name}`, { skip: dialect.skip }, () => {
    let harness: OperatorHarness;
    let cursor = 0;

    async function newOutboxRows(): Promise<OutboxRow[]> {
      const rows = await harness.storage.outbox.readAfter(cursor, 1000);
      cursor = rows.at(-1)?.id ?? cursor;
      return rows;
    }

    before(async () => {
      harness = await openOperators(dialect);
    });
    beforeEach(async () => {
      await newOutboxRows();
    });
    after(() => harness.close());

    void test("root creation writes an event", async () => {
      const [event] = await harness.storage.outbox.readAfter(0, 1);

      assert.equal(event!.topic, "operator_token.created");
      assert.deepEqual(JSON.parse(event!.payload), {
        id: harness.root.id,
        name: "root",
        environment: null,
        tenant: null,
        readOnly: false,
        root: true,
        createdAt: harness.clock.now(),
        expiresAt: null,
        revokedAt: null,
        createdBy: null,
      });
    });

    void test("create and revoke write events", async () => {
      const { service, root, clock } = harness;
      const { token, info } = await service.create(root, {
        name: "events",
        ttlMs: HOUR_MS,
        environment: "prod",
      });
      clock.advance(1000);
      await service.revoke(root, info.id);

      const rows = await newOutboxRows();
      assert.deepEqual(
        rows.map((row) => row.topic),
        ["operator_token.created", "operator_token.revoked"],
      );
      assert.deepEqual(JSON.parse(rows[0]!.payload), { ...info });
      assert.deepEqual(JSON.parse(rows[1]!.payload), {
        id: info.id,
        environment: "prod",
        tenant: null,
        root: false,
        revokedAt: clock.now(),
        revokedBy: root.id,
      });

      const hash = Buffer.from(hashSecret(token));
      for (const row of rows) {
        assert.ok(!row.payload.includes(token), "payload contains the secret");
        assert.ok(!row.payload.includes(token.split("_")[2]!), "payload contains the random part");
        assert.ok(!row.payload.includes(hash.toString("hex")), "payload contains the hash");
        assert.ok(!row.payload.includes(hash.toString("base64")), "payload contains the hash");
      }
    });

    void test("failed outbox rolls back creation", async () => {
      const { storage, clock, root } = harness;
      const failing = createOperatorTokenService({ storage: withFailingOutbox(storage), clock });
      const before = await harness.service.list(root);

      await assert.rejects(
        failing.create(root, { name: "lost", ttlMs: HOUR_MS }),
        /outbox append failed/,
      );

      assert.deepEqual(await harness.service.list(root), before);
      assert.deepEqual(await newOutboxRows(), []);
    });

    void test("failed outbox rolls back revocation", async () => {
      const { storage, clock, root, service } = harness;
      const target = await mint(service, root, { name: "survivor", ttlMs: DAY_MS });
      await newOutboxRows();
      const failing = createOperatorTokenService({ storage: withFailingOutbox(storage), clock });

      await assert.rejects(failing.revoke(root, target.principal.id), /outbox append failed/);

      const stored = await storage.operatorTokens.findById(target.principal.id);
      assert.equal(stored!.revoked_at, null);
      assert.equal((await service.authenticate(target.secret)).id, target.principal.id);
      assert.deepEqual(await newOutboxRows(), []);
    });

    void test("failed outbox rolls back root creation", async () => {
      const { storage, clock, root, service } = harness;
      await service.revoke(root, root.id);
      await newOutboxRows();
      const failing = createOperatorTokenService({ storage: withFailingOutbox(storage), clock });

      await assert.rejects(failing.createRootToken(), /outbox append failed/);

      assert.equal(await storage.operatorTokens.findLiveRoot(), undefined);
      assert.deepEqual(await newOutboxRows(), []);
    });

    void test("rejected root creation writes nothing", async () => {
      const { service } = harness;
      await service.createRootToken();
      await newOutboxRows();

      await assert.rejects(service.createRootToken(), expectArborError("ALREADY_INITIALIZED"));

      assert.deepEqual(await newOutboxRows(), []);
    });

    void test("root creation race is rejected", async () => {
      // Another node inserts its root token after this one's check: the unique index decides.
      const { storage, clock } = harness;
      const racing: Storage = {
        ...storage,
        operatorTokens: {
          ...storage.operatorTokens,
          findLiveRoot: () => Promise.resolve(undefined),
        },
      };
      const service = createOperatorTokenService({ storage: racing, clock });

      await assert.rejects(service.createRootToken(), expectArborError("ALREADY_INITIALIZED"));

      assert.deepEqual(await newOutboxRows(), []);
    });
  });

  void describe(`operator token constraints on ${dialect.name}`, { skip: dialect.skip }, () => {
    let storage: Storage;
    let close: () => Promise<void>;
    let counter = 0;
    const T0 = Date.UTC(2026, 0, 1);

    function tokenRow(overrides: Partial<Insertable<OperatorTokensTable>> = {}) {
      counter += 1;
      return {
        id: `opt_${String(counter).padStart(26, "a")}`,
        secret_hash: hashSecret(`secret ${counter}`),
        name: "row",
        environment: null,
        tenant: null,
        read_only: 0,
        is_root: 0,
        created_at: T0,
        expires_at: T0 + HOUR_MS,
        revoked_at: null,
        created_by: "opt_root",
        ...overrides,
      };
    }

    before(async () => {
      ({ storage, close } = await dialect.open());
      await storage.operatorTokens.insert(
        tokenRow({ id: "opt_root", is_root: 1, expires_at: null, created_by: null }),
      );
    });
    after(() => close());

    void test("valid row is accepted", async () => {
      await storage.operatorTokens.insert(tokenRow({ environment: "prod", tenant: "acme" }));
    });

    void test("second live root is refused", async () => {
      await rejectedBy("unique", () =>
        storage.operatorTokens.insert(tokenRow({ is_root: 1, expires_at: null, created_by: null })),
      );
    });

    void test("duplicate secret hash is refused", async () => {
      const row = tokenRow();
      await storage.operatorTokens.insert(row);

      await rejectedBy("unique", () =>
        storage.operatorTokens.insert({ ...tokenRow(), secret_hash: row.secret_hash }),
      );
    });

    void test("unknown creator is refused", async () => {
      await rejectedBy("foreign_key", () =>
        storage.operatorTokens.insert(tokenRow({ created_by: "opt_missing" })),
      );
    });

    const refused: [string, Partial<Insertable<OperatorTokensTable>>][] = [
      ["non-root without expiry", { expires_at: null }],
      ["non-root without creator", { created_by: null }],
      ["tenant without environment", { tenant: "acme" }],
      ["scoped root", { is_root: 1, expires_at: null, created_by: null, environment: "prod" }],
      ["read-only root", { is_root: 1, expires_at: null, created_by: null, read_only: 1 }],
      ["expiry before creation", { expires_at: T0 }],
      ["revoked before creation", { revoked_at: T0 - 1 }],
      ["empty name", { name: "" }],
      ["name over 64 characters", { name: "x".repeat(65) }],
      ["short hash", { secret_hash: new Uint8Array(16) }],
      ["flag other than 0 or 1", { read_only: 2 }],
      ["empty environment", { environment: "" }],
    ];
    for (const [name, overrides] of refused) {
      void test(`${name} is refused`, async () => {
        await rejectedBy("check", () => storage.operatorTokens.insert(tokenRow(overrides)));
      });
    }
  });
}
