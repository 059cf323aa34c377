import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { isArborError } from "../../src/errors/index.ts";
import { MaterialCache } from "../../src/hierarchy/index.ts";
import { FakeClock } from "../helpers/clock.ts";
import { dialects } from "../helpers/dialects.ts";
import { openTree, reopenTree, unsealWith } from "../helpers/tree.ts";

function rejectsWith(code: string, pattern?: RegExp) {
  return (error: unknown) => {
    assert.ok(isArborError(error), `expected an ArborError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (pattern !== undefined) assert.match(error.message, pattern);
    return true;
  };
}

for (const dialect of dialects) {
  describe(`key versions on ${dialect.name}`, { skip: dialect.skip }, () => {
    test("restart keeps keys and unwraps after unseal", async () => {
      const h = await openTree(dialect);
      await h.tree.createKey("prod");
      await h.tree.createKey("prod/acme");
      await h.tree.createKey("prod/acme/billing:encrypt");
      await h.tree.createKey("prod/acme/derived:encrypt", { mode: "derived" });
      await h.tree.rotate("prod/acme/billing:encrypt");
      await h.tree.rotate("prod");
      const paths = ["prod/acme/billing:encrypt", "prod/acme/derived:encrypt"];
      const before = new Map<string, string>();
      for (const path of paths) {
        const info = await h.tree.getKey(path);
        for (const v of info.versions) {
          const ref = await h.tree.versionForDecrypt(await h.tree.resolveKey(path), v.version);
          before.set(
            `${path}@${v.version}`,
            await h.tree.withMaterial(ref, (m) => Buffer.from(m).toString("hex")),
          );
        }
      }
      h.root.seal();
      h.tree.clearCache();
      await h.storage.close();

      const again = await reopenTree(dialect, h.file!, h.shares, h.clock);
      try {
        assert.equal(again.root.status().state, "sealed");
        const key = await again.tree.resolveKey("prod/acme/billing:encrypt");
        const ref = await again.tree.versionForDecrypt(key, 1);
        await assert.rejects(
          again.tree.withMaterial(ref, () => undefined),
          rejectsWith("SEALED"),
        );

        await unsealWith(again.root, again.shares.slice(2), 3);
        for (const [label, hex] of before) {
          const [path, version] = label.split("@") as [string, string];
          const resolved = await again.tree.versionForDecrypt(
            await again.tree.resolveKey(path),
            Number(version),
          );
          assert.equal(
            await again.tree.withMaterial(resolved, (m) => Buffer.from(m).toString("hex")),
            hex,
            label,
          );
        }
      } finally {
        await again.close();
      }
    });

    test("version states refuse what they forbid", async () => {
      const h = await openTree(dialect);
      try {
        await h.tree.createKey("prod");
        await h.tree.createKey("prod/app:encrypt");
        await h.tree.rotate("prod/app:encrypt");
        const key = await h.tree.resolveKey("prod/app:encrypt");

        await assert.rejects(
          h.tree.disableVersion("prod/app:encrypt", 2),
          rejectsWith("KEY_STATE_CONFLICT", /rotate/),
        );
        const disabled = await h.tree.disableVersion("prod/app:encrypt", 1);
        assert.equal(disabled.state, "disabled");
        await assert.rejects(
          h.tree.versionForDecrypt(key, 1),
          rejectsWith("KEY_STATE_CONFLICT", /disabled/),
        );
        await assert.rejects(
          h.tree.disableVersion("prod/app:encrypt", 1),
          rejectsWith("KEY_STATE_CONFLICT"),
        );

        assert.equal((await h.tree.enableVersion("prod/app:encrypt", 1)).state, "active");
        await h.tree.versionForDecrypt(key, 1);
        await assert.rejects(
          h.tree.enableVersion("prod/app:encrypt", 1),
          rejectsWith("KEY_STATE_CONFLICT"),
        );

        assert.equal((await h.tree.revokeVersion("prod/app:encrypt", 1)).state, "revoked");
        await assert.rejects(
          h.tree.versionForDecrypt(key, 1),
          rejectsWith("KEY_STATE_CONFLICT", /revoked/),
        );
        await assert.rejects(
          h.tree.enableVersion("prod/app:encrypt", 1),
          rejectsWith("KEY_STATE_CONFLICT", /revoked/),
        );
        await assert.rejects(
          h.tree.revokeVersion("prod/app:encrypt", 1),
          rejectsWith("KEY_STATE_CONFLICT"),
        );

        await assert.rejects(
          h.tree.disableVersion("prod/app:encrypt", 9),
          rejectsWith("KEY_VERSION_NOT_FOUND", /9/),
        );
        await assert.rejects(
          h.tree.disableVersion("prod/app:encrypt", 0),
          rejectsWith("INVALID_ARGUMENT"),
        );
        await assert.rejects(
          h.tree.versionForDecrypt(key, 7),
          rejectsWith("KEY_VERSION_NOT_FOUND"),
        );

        // A revoked primary leaves no primary: nothing new is produced until a rotation.
        await h.tree.revokeVersion("prod/app:encrypt", 2);
        await assert.rejects(
          h.tree.primaryFor("prod/app:encrypt", "encrypt"),
          rejectsWith("KEY_STATE_CONFLICT", /rotate/),
        );
        assert.equal((await h.tree.rotate("prod/app:encrypt")).version, 3);
        assert.equal((await h.tree.primaryFor("prod/app:encrypt", "encrypt")).version.version, 3);
      } finally {
        await h.close();
      }
    });

    test("revoked parent version blocks its children", async () => {
      const h = await openTree(dialect);
      try {
        await h.tree.createKey("prod");
        await h.tree.createKey("prod/app:encrypt");
        await h.tree.rotate("prod");
        await h.tree.revokeVersion("prod", 1);
        const key = await h.tree.resolveKey("prod/app:encrypt");
        const ref = await h.tree.versionForDecrypt(key, 1);
        await assert.rejects(
          h.tree.withMaterial(ref, () => undefined),
          rejectsWith("KEY_STATE_CONFLICT", /parent prod version 1 is revoked/),
        );
      } finally {
        await h.close();
      }
    });

    test("minimum decryption version", async () => {
      const h = await openTree(dialect);
      try {
        await h.tree.createKey("prod");
        await h.tree.createKey("prod/app:encrypt");
        await h.tree.createKey("prod/app:sign");
        await h.tree.rotate("prod/app:encrypt");
        await h.tree.rotate("prod/app:encrypt");
        await assert.rejects(
          h.tree.setMinDecryptionVersion("prod/app:encrypt", 4),
          rejectsWith("INVALID_ARGUMENT", /between 1 and 3/),
        );
        await assert.rejects(
          h.tree.setMinDecryptionVersion("prod/app:encrypt", 0),
          rejectsWith("INVALID_ARGUMENT"),
        );
        await assert.rejects(
          h.tree.setMinDecryptionVersion("prod/app:sign", 1),
          rejectsWith("PURPOSE_MISMATCH"),
        );
        assert.equal(await h.tree.setMinDecryptionVersion("prod/app:encrypt", 2), 2);
        const key = await h.tree.resolveKey("prod/app:encrypt");
        await assert.rejects(
          h.tree.versionForDecrypt(key, 1),
          rejectsWith("KEY_STATE_CONFLICT", /minimum decryption version 2/),
        );
        await h.tree.versionForDecrypt(key, 2);
        await h.tree.versionForDecrypt(key, 3);
      } finally {
        await h.close();
      }
    });

    test("publish delay then promotion and retirement", async () => {
      const clock = new FakeClock();
      const h = await openTree(dialect, clock);
      try {
        await h.tree.createKey("prod");
        await h.tree.createKey("prod/api:sign");
        const pending = await h.tree.rotate("prod/api:sign", { publishDelayMs: 60_000 });
        assert.equal(pending.state, "pending");
        assert.equal(pending.activateAt, clock.now() + 60_000);
        assert.equal(await h.tree.promoteDuePending(), 0);
        assert.equal((await h.tree.primaryFor("prod/api:sign", "sign")).version.version, 1);

        clock.advance(60_000);
        assert.equal(await h.tree.promoteDuePending(), 1);
        const info = await h.tree.getKey("prod/api:sign");
        assert.deepEqual(
          info.versions.map((v) => v.state),
          ["active", "primary"],
        );
        const retireAt = info.versions[0]!.retireAt!;
        assert.equal(retireAt, clock.now() + 20 * 60_000);

        clock.advance(20 * 60_000 - 1);
        assert.equal(await h.tree.retireDueSigningVersions(), 0);
        clock.advance(1);
        assert.equal(await h.tree.retireDueSigningVersions(), 1);
        assert.equal((await h.tree.getKey("prod/api:sign")).versions[0]!.state, "disabled");
        await assert.rejects(
          h.tree.rotate("prod/api:sign", { publishDelayMs: -1 }),
          rejectsWith("INVALID_ARGUMENT"),
        );
      } finally {
        await h.close();
      }
    });

    test("older pending version never replaces newer primary", async () => {
      const clock = new FakeClock();
      const h = await openTree(dialect, clock);
      try {
        await h.tree.createKey("prod");
        await h.tree.createKey("prod/api:sign");
        await h.tree.rotate("prod/api:sign", { publishDelayMs: 60_000 });
        assert.equal((await h.tree.rotate("prod/api:sign")).state, "primary");

        clock.advance(60_000);
        assert.equal(await h.tree.promoteDuePending(), 0);
        const info = await h.tree.getKey("prod/api:sign");
        assert.deepEqual(
          info.versions.map((v) => v.state),
          ["active", "active", "primary"],
        );
        assert.equal(info.primaryVersion, 3);
        assert.equal(info.versions[1]!.retireAt, clock.now() + 20 * 60_000);
      } finally {
        await h.close();
      }
    });

    test("wrapped blob moved elsewhere fails to open", async () => {
      const h = await openTree(dialect);
      try {
        await h.tree.createKey("prod");
        await h.tree.createKey("prod/acme");
        await h.tree.createKey("prod/globex");
        await h.tree.createKey("prod/acme/a:encrypt");
        await h.tree.createKey("prod/acme/b:encrypt");
        await h.tree.createKey("prod/globex/a:encrypt");
        await h.tree.rotate("prod/acme/a:encrypt");
        const id = async (path: string) => (await h.tree.resolveKey(path)).id;
        const blob = async (path: string, version: number) =>
          (await h.storage.versions.find(await id(path), version))!.material!;
        const plant = async (path: string, version: number, material: Uint8Array) =>
          h.storage.db
            .updateTable("key_versions")
            .set({ material })
            .where("key_id", "=", await id(path))
            .where("version", "=", version)
            .execute();
        const opens = async (path: string, version: number) => {
          h.cache.clear();
          const ref = await h.tree.versionForDecrypt(await h.tree.resolveKey(path), version);
          return h.tree.withMaterial(ref, () => true);
        };

        const original = await blob("prod/acme/b:encrypt", 1);
        // To another key under the same parent version.
        await plant("prod/acme/b:encrypt", 1, await blob("prod/acme/a:encrypt", 1));
        await assert.rejects(
          opens("prod/acme/b:encrypt", 1),
          rejectsWith("STORED_KEY_CORRUPT", /prod\/acme\/b:encrypt version 1/),
        );
        await plant("prod/acme/b:encrypt", 1, original);
        assert.equal(await opens("prod/acme/b:encrypt", 1), true);

        // To another version of the same key.
        const v1 = await blob("prod/acme/a:encrypt", 1);
        await plant("prod/acme/a:encrypt", 2, v1);
        await assert.rejects(opens("prod/acme/a:encrypt", 2), rejectsWith("STORED_KEY_CORRUPT"));

        // To another tenant's key of the same name.
        await plant("prod/globex/a:encrypt", 1, v1);
        await assert.rejects(opens("prod/globex/a:encrypt", 1), rejectsWith("STORED_KEY_CORRUPT"));

        // One flipped bit in a root-wrapped master.
        const master = Buffer.from(await blob("prod/acme", 1));
        const masterId = await id("prod");
        const prodBlob = Buffer.from((await h.storage.versions.find(masterId, 1))!.material!);
        prodBlob[prodBlob.length - 1]! ^= 1;
        await plant("prod", 1, prodBlob);
        await assert.rejects(
          opens("prod/acme", 1),
          rejectsWith("STORED_KEY_CORRUPT", /prod version 1/),
        );
        assert.ok(master.length > 0);

        const logged = h.logger.entries.filter((e) => e.level === "error");
        assert.ok(logged.length >= 4);
        assert.ok(
          logged.every(
            (e) => typeof e.details.version === "number" && typeof e.details.keyId === "string",
          ),
        );
      } finally {
        await h.close();
      }
    });
  });
}

describe("material cache", () => {
  test("entries zeroed on eviction, expiry and clear", () => {
    const clock = new FakeClock();
    const cache = new MaterialCache({ clock, maxEntries: 2, ttlMs: 1000 });
    const a = new Uint8Array(32).fill(0xa1);
    const b = new Uint8Array(32).fill(0xb2);
    const c = new Uint8Array(32).fill(0xc3);
    cache.put("key_a", 1, a);
    cache.put("key_b", 1, b);

    const copy = cache.copy("key_a", 1)!;
    assert.deepEqual(copy, new Uint8Array(32).fill(0xa1));
    copy.fill(0);
    assert.deepEqual(
      cache.copy("key_a", 1),
      new Uint8Array(32).fill(0xa1),
      "a copy is independent",
    );

    cache.put("key_c", 1, c); // evicts the least recently used entry, key_b
    assert.deepEqual(b, new Uint8Array(32), "evicted entry is zeroed");
    assert.equal(cache.copy("key_b", 1), undefined);

    clock.advance(1001);
    assert.equal(cache.copy("key_a", 1), undefined);
    assert.deepEqual(a, new Uint8Array(32), "expired entry is zeroed");

    const d = new Uint8Array(32).fill(0xd4);
    cache.put("key_d", 1, d);
    cache.clear();
    assert.deepEqual(c, new Uint8Array(32));
    assert.deepEqual(d, new Uint8Array(32));
    assert.equal(cache.size, 0);
  });

  test("seal clears the cache", async () => {
    const h = await openTree(dialects[0]!);
    try {
      await h.tree.createKey("prod");
      await h.tree.createKey("prod/app:encrypt");
      const ref = await h.tree.primaryFor("prod/app:encrypt", "encrypt");
      await h.tree.withMaterial(ref, () => undefined);
      assert.ok(h.cache.size >= 2);
      h.root.seal();
      h.tree.clearCache();
      assert.equal(h.cache.size, 0);
      await assert.rejects(
        h.tree.withMaterial(ref, () => undefined),
        rejectsWith("SEALED"),
      );
    } finally {
      await h.close();
    }
  });
});
