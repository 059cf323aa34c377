import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { after, before, describe, test } from "node:test";

import Sqlite from "better-sqlite3";
import { sql, type Insertable } from "kysely";

import {
  constraintViolation,
  migrateToLatest,
  type KeysTable,
  type Storage,
} from "../../src/storage/index.ts";
import { dialects } from "../helpers/dialects.ts";

const T0 = Date.UTC(2026, 0, 1);

function keyRow(
  overrides: Partial<Insertable<KeysTable>> & { id: string; path: string },
): Insertable<KeysTable> {
  return {
    kind: "master",
    environment: "prod",
    tenant: "-",
    service: "-",
    purpose: "wrap",
    algorithm: "AES-256-GCM",
    mode: "wrapped",
    parent_id: null,
    parent_tenant: null,
    parent_kind: null,
    min_decryption_version: 1,
    rotation_period_ms: null,
    created_at: T0,
    ...overrides,
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
  describe(`storage on ${dialect.name}`, { skip: dialect.skip }, () => {
    let storage: Storage;
    let close: () => Promise<void>;

    before(async () => {
      ({ storage, close } = await dialect.open());
      const { keys } = storage;
      await keys.insert(keyRow({ id: "key_prod", path: "prod" }));
      await keys.insert(keyRow({ id: "key_stage", path: "stage", environment: "stage" }));
      await keys.insert(
        keyRow({
          id: "key_prod_acme",
          path: "prod/acme",
          tenant: "acme",
          parent_id: "key_prod",
          parent_tenant: "-",
          parent_kind: "master",
        }),
      );
      await keys.insert(
        keyRow({
          id: "key_prod_globex",
          path: "prod/globex",
          tenant: "globex",
          parent_id: "key_prod",
          parent_tenant: "-",
          parent_kind: "master",
        }),
      );
    });
    after(() => close());

    test("cross-environment parent is refused by the database", async () => {
      // A stage service under the prod master: the composite foreign key finds no parent row
      // with environment "stage".
      await rejectedBy("foreign_key", () =>
        storage.keys.insert(
          keyRow({
            id: "key_x1",
            path: "stage/billing:encrypt",
            kind: "service",
            environment: "stage",
            service: "billing",
            purpose: "encrypt",
            parent_id: "key_prod",
            parent_tenant: "-",
            parent_kind: "master",
          }),
        ),
      );
    });

    test("cross-tenant parent is refused by the database", async () => {
      // An acme service claiming globex's master: the tenant must equal the parent's tenant.
      await rejectedBy("check", () =>
        storage.keys.insert(
          keyRow({
            id: "key_x2",
            path: "prod/acme/billing:encrypt",
            kind: "service",
            tenant: "acme",
            service: "billing",
            purpose: "encrypt",
            parent_id: "key_prod_globex",
            parent_tenant: "globex",
            parent_kind: "master",
          }),
        ),
      );
      // The same, lying about the parent's tenant: the foreign key catches it.
      await rejectedBy("foreign_key", () =>
        storage.keys.insert(
          keyRow({
            id: "key_x3",
            path: "prod/acme/billing:encrypt",
            kind: "service",
            tenant: "acme",
            service: "billing",
            purpose: "encrypt",
            parent_id: "key_prod_globex",
            parent_tenant: "acme",
            parent_kind: "master",
          }),
        ),
      );
    });

    test("tenant service directly under environment master is refused", async () => {
      await rejectedBy("check", () =>
        storage.keys.insert(
          keyRow({
            id: "key_x4",
            path: "prod/acme/billing:sign",
            kind: "service",
            tenant: "acme",
            service: "billing",
            purpose: "sign",
            algorithm: "EdDSA",
            parent_id: "key_prod",
            parent_tenant: "-",
            parent_kind: "master",
          }),
        ),
      );
    });

    test("partial parent columns are refused", async () => {
      // With any foreign-key column null the reference would go unchecked, so a CHECK forbids it.
      await rejectedBy("check", () =>
        storage.keys.insert(
          keyRow({
            id: "key_x5",
            path: "stage/billing:encrypt",
            kind: "service",
            environment: "stage",
            service: "billing",
            purpose: "encrypt",
            parent_id: "key_prod",
            parent_tenant: null,
            parent_kind: "master",
          }),
        ),
      );
    });

    test("service key as parent is refused", async () => {
      await storage.keys.insert(
        keyRow({
          id: "key_ledger",
          path: "prod/ledger:encrypt",
          kind: "service",
          service: "ledger",
          purpose: "encrypt",
          parent_id: "key_prod",
          parent_tenant: "-",
          parent_kind: "master",
        }),
      );
      await rejectedBy("check", () =>
        storage.keys.insert(
          keyRow({
            id: "key_x6",
            path: "prod/nested:encrypt",
            kind: "service",
            service: "nested",
            purpose: "encrypt",
            parent_id: "key_ledger",
            parent_tenant: "-",
            parent_kind: "service",
          }),
        ),
      );
    });

    test("path is unique across all keys", async () => {
      await rejectedBy("unique", () =>
        storage.keys.insert(keyRow({ id: "key_other", path: "prod" })),
      );
    });

    test("version parent must be the key's parent", async () => {
      await storage.versions.insert(versionRow("key_prod", 1, null, 1));
      await storage.versions.insert(versionRow("key_stage", 1, null, 1));
      // prod/acme is a child of prod, so a version claiming stage's version as its wrapper is refused.
      await rejectedBy("foreign_key", () =>
        storage.versions.insert(versionRow("key_prod_acme", 1, "key_stage", 1)),
      );
      await storage.versions.insert(versionRow("key_prod_acme", 1, "key_prod", 1));
      assert.equal((await storage.versions.wrappedBy("key_prod", 1)).length, 1);
    });

    test("at most one primary version per key", async () => {
      await storage.versions.insert(versionRow("key_prod_globex", 1, "key_prod", 1));
      await rejectedBy("unique", () =>
        storage.versions.insert(versionRow("key_prod_globex", 2, "key_prod", 1)),
      );
      await storage.versions.insert({
        ...versionRow("key_prod_globex", 2, "key_prod", 1),
        state: "active",
      });
    });

    test("outbox row rolls back with its change", async () => {
      const before = await storage.outbox.readAfter(0, 1000);
      await assert.rejects(
        storage.write(async (trx) => {
          await storage.outbox.append("key.rotated", { keyId: "key_prod" }, T0, trx);
          await storage.keys.insert(keyRow({ id: "key_dup", path: "prod" }), trx);
        }),
      );
      assert.deepEqual(await storage.outbox.readAfter(0, 1000), before);

      await storage.write((trx) =>
        storage.outbox.append("key.rotated", { keyId: "key_prod" }, T0 + 5, trx),
      );
      const rows = await storage.outbox.readAfter(before.at(-1)?.id ?? 0, 10);
      assert.equal(rows.length, 1);
      assert.equal(rows[0]!.topic, "key.rotated");
      assert.equal(rows[0]!.created_at, T0 + 5);
      assert.deepEqual(JSON.parse(rows[0]!.payload), { keyId: "key_prod" });
    });

    test("sealed root store refuses duplicates", async () => {
      const record = { shares: 5, threshold: 3, checkValue: new Uint8Array(32), createdAt: T0 };
      const first = { version: 1, sealedKey: new Uint8Array([1]), createdAt: T0 };
      await storage.sealedRoot.create(record, first);
      await assert.rejects(storage.sealedRoot.create(record, first), (error: unknown) => {
        assert.equal((error as { code?: string }).code, "ALREADY_INITIALIZED");
        return true;
      });
      await assert.rejects(storage.sealedRoot.addVersion(first), (error: unknown) => {
        assert.equal((error as { code?: string }).code, "CONCURRENT_UPDATE");
        return true;
      });
      const loaded = await storage.sealedRoot.load();
      assert.equal(loaded?.versions.length, 1);
      assert.deepEqual(loaded?.record.checkValue, new Uint8Array(32));
    });

    test("issuances queried by key version and expiry", async () => {
      const base = {
        kind: "token" as const,
        key_id: "key_prod",
        key_version: 1,
        principal: "svc",
        revoked_at: null,
      };
      await storage.issuances.record({
        ...base,
        id: "tok_a",
        issued_at: T0,
        expires_at: T0 + 1000,
      });
      await storage.issuances.record({
        ...base,
        id: "tok_b",
        issued_at: T0,
        expires_at: T0 + 5000,
      });
      await storage.issuances.record({
        ...base,
        id: "dk_c",
        kind: "data_key",
        issued_at: T0,
        expires_at: null,
      });

      const live = await storage.issuances.liveByKeyVersion("key_prod", 1, T0 + 2000);
      assert.deepEqual(
        live.map((row) => row.id),
        ["dk_c", "tok_b"],
      );
      const expiring = await storage.issuances.expiringBetween(T0, T0 + 2000);
      assert.deepEqual(
        expiring.map((row) => row.id),
        ["tok_a"],
      );

      assert.equal(await storage.issuances.revoke("tok_b", T0 + 2500), true);
      assert.equal(await storage.issuances.revoke("tok_b", T0 + 2600), false);
      assert.deepEqual(
        (await storage.issuances.liveByKeyVersion("key_prod", 1, T0 + 2000)).map((r) => r.id),
        ["dk_c"],
      );
      await rejectedBy("foreign_key", () =>
        storage.issuances.record({
          ...base,
          id: "tok_x",
          key_version: 99,
          issued_at: T0,
          expires_at: null,
        }),
      );
    });
  });
}

function versionRow(
  keyId: string,
  version: number,
  parentKeyId: string | null,
  parentVersion: number,
) {
  return {
    key_id: keyId,
    version,
    state: "primary" as const,
    material: new Uint8Array([1, 2, 3]),
    salt: null,
    public_jwk: null,
    parent_key_id: parentKeyId,
    parent_version: parentVersion,
    created_at: T0,
    activate_at: T0,
    retire_at: null,
    updated_at: T0,
  };
}

describe("sqlite settings", () => {
  const sqliteDialect = dialects.find((d) => d.name === "sqlite")!;

  test("pragmas are WAL, FULL and foreign keys", async () => {
    const { file, close } = await sqliteDialect.open();
    const raw = new Sqlite(file);
    try {
      assert.equal(raw.pragma("journal_mode", { simple: true }), "wal");
    } finally {
      raw.close();
    }
    const { storage, close: close2 } = await sqliteDialect.open();
    const synchronous = await sql<{ synchronous: number }>`pragma synchronous`.execute(storage.db);
    assert.equal(synchronous.rows[0]?.synchronous, 2, "synchronous=FULL is 2");
    const foreignKeys = await sql<{ foreign_keys: number }>`pragma foreign_keys`.execute(
      storage.db,
    );
    assert.equal(foreignKeys.rows[0]?.foreign_keys, 1);
    await close2();
    await close();
  });

  test("database file readable by its owner only", async () => {
    const { file, close } = await sqliteDialect.open();
    try {
      assert.equal(statSync(file!).mode & 0o777, 0o600);
    } finally {
      await close();
    }
  });

  test("write transactions take the lock at BEGIN", async () => {
    const { storage, file, close } = await sqliteDialect.open();
    const other = new Sqlite(file, { timeout: 0 });
    try {
      await storage.write(async (trx) => {
        // Only a read so far; with BEGIN IMMEDIATE the write lock is already held.
        await storage.keys.findByPath("prod", trx);
        assert.throws(
          () =>
            other
              .prepare("insert into outbox (topic, payload, created_at) values ('t', '{}', 1)")
              .run(),
          (error: unknown) => (error as { code?: string }).code === "SQLITE_BUSY",
        );
      });
      other.prepare("insert into outbox (topic, payload, created_at) values ('t', '{}', 1)").run();
    } finally {
      other.close();
      await close();
    }
  });

  test("migrations run once and reopen cleanly", async () => {
    const { file, close } = await sqliteDialect.open();
    const again = await sqliteDialect.reopen!(file!);
    const { rows } = await sql<{
      name: string;
    }>`select name from kysely_migration order by name`.execute(again.db);
    assert.equal(rows[0]?.name, "0001_key_tree");
    assert.ok(rows.length >= 3);
    assert.deepEqual(
      await migrateToLatest(again.db as never, "sqlite"),
      [],
      "nothing left to apply",
    );
    await again.close();
    await close();
  });
});
