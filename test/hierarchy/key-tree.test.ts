import assert from "node:assert/strict";
import { createPublicKey, sign, verify } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { importPrivateKey } from "../../src/crypto/index.ts";
import { isArborError } from "../../src/errors/index.ts";
import type { KeyTree } from "../../src/hierarchy/index.ts";
import { dialects } from "../helpers/dialects.ts";
import { openTree, type TreeHarness } from "../helpers/tree.ts";

function rejectsWith(code: string, pattern?: RegExp) {
  return (error: unknown) => {
    assert.ok(isArborError(error), `expected an ArborError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (pattern !== undefined) assert.match(error.message, pattern);
    return true;
  };
}

async function materialOf(tree: KeyTree, path: string, version?: number): Promise<Buffer> {
  const key = await tree.resolveKey(path);
  const ref =
    version === undefined
      ? {
          key,
          version: (await tree.getKey(key.id)).versions.find((v) => v.state === "primary")!.version,
        }
      : { key, version };
  const resolved = await tree.versionForDecrypt(key, ref.version);
  return tree.withMaterial(resolved, (material) => Buffer.from(material));
}

async function rowCounts(h: TreeHarness) {
  const count = async (table: "keys" | "key_versions" | "outbox") =>
    Number(
      (
        await h.storage.db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll().as("n"))
          .executeTakeFirstOrThrow()
      ).n,
    );
  return {
    keys: await count("keys"),
    versions: await count("key_versions"),
    outbox: await count("outbox"),
  };
}

for (const dialect of dialects) {
  describe(`key tree on ${dialect.name}`, { skip: dialect.skip }, () => {
    let h: TreeHarness;

    before(async () => {
      h = await openTree(dialect);
      await h.tree.createKey("prod");
      await h.tree.createKey("stage");
      await h.tree.createKey("prod/acme");
      await h.tree.createKey("prod/globex");
      await h.tree.createKey("prod/acme/billing:encrypt");
      await h.tree.createKey("prod/globex/billing:encrypt");
      await h.tree.createKey("prod/acme/billing:sign");
      await h.tree.createKey("prod/ledger:encrypt", { mode: "derived" });
    });
    after(() => h.close());

    test("tree nests services under their masters", async () => {
      const nodes = await h.tree.tree();
      const prod = nodes.find((n) => n.path === "prod")!;
      assert.deepEqual(
        prod.children.map((n) => n.path),
        ["prod/acme", "prod/globex", "prod/ledger:encrypt"],
      );
      const acme = prod.children.find((n) => n.path === "prod/acme")!;
      assert.deepEqual(
        acme.children.map((n) => n.path),
        ["prod/acme/billing:encrypt", "prod/acme/billing:sign"],
      );
      const info = await h.tree.getKey("prod/acme/billing:encrypt");
      assert.match(info.id, /^key_[a-z2-7]{26}$/);
      assert.equal(info.tenant, "acme");
      assert.equal(info.versions[0]!.parentKeyId, (await h.tree.getKey("prod/acme")).id);
      assert.equal((await h.tree.getKey("prod")).versions[0]!.parentKeyId, "root");
    });

    test("every version records its wrapping parent version", async () => {
      const acme = await h.tree.getKey("prod/acme");
      await h.tree.rotate("prod/acme");
      await h.tree.createKey("prod/acme/reports:encrypt");
      const reports = await h.tree.getKey("prod/acme/reports:encrypt");
      assert.equal(reports.versions[0]!.parentKeyId, acme.id);
      assert.equal(reports.versions[0]!.parentVersion, 2);
      const billing = await h.tree.getKey("prod/acme/billing:encrypt");
      assert.equal(
        billing.versions[0]!.parentVersion,
        1,
        "older children keep their wrapping version",
      );
      assert.deepEqual(
        await materialOf(h.tree, "prod/acme/billing:encrypt"),
        await materialOf(h.tree, "prod/acme/billing:encrypt"),
      );
    });

    test("bad create input changes nothing", async () => {
      const before = await rowCounts(h);
      await assert.rejects(h.tree.createKey("Prod"), rejectsWith("INVALID_PATH", /"Prod"/));
      await assert.rejects(h.tree.createKey("prod/acme/billing"), rejectsWith("INVALID_PATH"));
      await assert.rejects(
        h.tree.createKey("prod/acme/x:decrypt"),
        rejectsWith("INVALID_PATH", /purpose/),
      );
      await assert.rejects(
        h.tree.createKey("qa/payments:encrypt"),
        rejectsWith("KEY_NOT_FOUND", /"qa"/),
      );
      await assert.rejects(
        h.tree.createKey("prod/initech/api:sign"),
        rejectsWith("KEY_NOT_FOUND", /prod\/initech/),
      );
      await assert.rejects(
        h.tree.createKey("prod/acme/api:encrypt", { algorithm: "ES256" }),
        rejectsWith("INVALID_ARGUMENT", /algorithm/),
      );
      await assert.rejects(
        h.tree.createKey("prod/acme/api:sign", { mode: "derived" }),
        rejectsWith("INVALID_ARGUMENT", /mode/),
      );
      await assert.rejects(
        h.tree.createKey("prod/acme/api:sign", { algorithm: "RS256" as never }),
        rejectsWith("INVALID_ARGUMENT", /"RS256"/),
      );
      await assert.rejects(
        h.tree.createKey("prod/acme"),
        rejectsWith("PATH_IN_USE", /never reused/),
      );
      assert.deepEqual(await rowCounts(h), before);
    });

    test("rotation keeps old versions unwrapping", async () => {
      const v1 = await materialOf(h.tree, "prod/acme/billing:encrypt", 1);
      const v2info = await h.tree.rotate("prod/acme/billing:encrypt");
      assert.equal(v2info.version, 2);
      assert.equal(v2info.state, "primary");
      h.cache.clear();
      assert.deepEqual(await materialOf(h.tree, "prod/acme/billing:encrypt", 1), v1);
      const v2 = await materialOf(h.tree, "prod/acme/billing:encrypt", 2);
      assert.notDeepEqual(v2, v1);
      const info = await h.tree.getKey("prod/acme/billing:encrypt");
      assert.deepEqual(
        info.versions.map((v) => v.state),
        ["active", "primary"],
      );
    });

    test("concurrent creations of one path give one key", async () => {
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, () => h.tree.createKey("prod/acme/race:encrypt")),
      );
      const created = results.filter((r) => r.status === "fulfilled");
      const refused = results.filter(
        (r) => r.status === "rejected" && isArborError(r.reason, "PATH_IN_USE"),
      );
      assert.equal(created.length, 1);
      assert.equal(refused.length, 49);
      assert.equal((await h.tree.listKeys({ pathPrefix: "prod/acme/race:encrypt" })).length, 1);
    });

    test("concurrent rotations give distinct versions", async () => {
      await h.tree.createKey("prod/globex/spin:encrypt");
      const results = await Promise.all(
        Array.from({ length: 10 }, () => h.tree.rotate("prod/globex/spin:encrypt")),
      );
      const versions = results.map((r) => r.version).sort((a, b) => a - b);
      assert.deepEqual(versions, [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      const info = await h.tree.getKey("prod/globex/spin:encrypt");
      assert.equal(info.versions.length, 11);
      assert.equal(info.versions.filter((v) => v.state === "primary").length, 1);
      assert.equal(info.primaryVersion, 11);
      // Every version still unwraps.
      h.cache.clear();
      const materials = await Promise.all(
        info.versions.map((v) => materialOf(h.tree, info.path, v.version)),
      );
      assert.equal(new Set(materials.map((m) => m.toString("hex"))).size, 11);
    });

    test("derived keys differ after revocation and re-creation", async () => {
      await h.tree.createKey("prod/acme/derived-a:encrypt", { mode: "derived" });
      const first = await materialOf(h.tree, "prod/acme/derived-a:encrypt");
      await h.tree.revokeVersion("prod/acme/derived-a:encrypt", 1);
      await assert.rejects(
        h.tree.createKey("prod/acme/derived-a:encrypt", { mode: "derived" }),
        rejectsWith("PATH_IN_USE"),
      );
      await h.tree.createKey("prod/acme/derived-b:encrypt", { mode: "derived" });
      const second = await materialOf(h.tree, "prod/acme/derived-b:encrypt");
      assert.notDeepEqual(second, first);
      // A derived key is reproducible: same material after the cache is dropped.
      h.cache.clear();
      assert.deepEqual(await materialOf(h.tree, "prod/acme/derived-b:encrypt"), second);
      const row = await h.storage.versions.find(
        (await h.tree.resolveKey("prod/acme/derived-b:encrypt")).id,
        1,
      );
      assert.equal(row!.material, null, "derived material is never stored");
      assert.equal(row!.salt!.length, 32);
    });

    test("sign keys hold working key pairs", async () => {
      await h.tree.createKey("prod/acme/es:sign", { algorithm: "ES256" });
      for (const path of ["prod/acme/billing:sign", "prod/acme/es:sign"]) {
        const info = await h.tree.getKey(path);
        const jwk = info.versions[0]!.publicJwk!;
        assert.equal("d" in jwk, false, "the public JWK has no private part");
        const pkcs8 = await materialOf(h.tree, path);
        const privateKey = importPrivateKey(pkcs8);
        const hash = info.algorithm === "ES256" ? "sha256" : null;
        const signature = sign(hash, Buffer.from("payload"), privateKey);
        const publicKey = createPublicKey({ key: jwk as never, format: "jwk" });
        assert.equal(verify(hash, Buffer.from("payload"), publicKey, signature), true, path);
      }
    });

    test("purpose mismatch is refused", async () => {
      await assert.rejects(
        h.tree.primaryFor("prod/acme/billing:sign", "encrypt"),
        rejectsWith("PURPOSE_MISMATCH"),
      );
      const ref = await h.tree.primaryFor("prod/acme/billing", "encrypt");
      assert.equal(ref.key.path, "prod/acme/billing:encrypt");
    });

    test("scope hides other tenants' keys", async () => {
      await assert.rejects(
        h.tree.resolveKey("prod/globex/billing:encrypt", undefined, {
          environment: "prod",
          tenant: "acme",
        }),
        rejectsWith("KEY_NOT_FOUND"),
      );
      const id = (await h.tree.resolveKey("prod/globex/billing:encrypt")).id;
      await assert.rejects(
        h.tree.resolveKey(id, undefined, { environment: "stage", tenant: null }),
        rejectsWith("KEY_NOT_FOUND"),
      );
      const found = await h.tree.resolveKey("prod/acme/billing:encrypt", undefined, {
        environment: "prod",
        tenant: "acme",
      });
      assert.equal(found.tenant, "acme");
    });

    test("every change writes the outbox", async () => {
      const before = (await h.storage.outbox.readAfter(0, 100_000)).length;
      await h.tree.createKey("stage/api:sign");
      await h.tree.rotate("stage/api:sign");
      await h.tree.disableVersion("stage/api:sign", 1);
      await h.tree.enableVersion("stage/api:sign", 1);
      await h.tree.revokeVersion("stage/api:sign", 1);
      const rows = (await h.storage.outbox.readAfter(0, 100_000)).slice(before);
      assert.deepEqual(
        rows.map((r) => r.topic),
        [
          "key.created",
          "key.rotated",
          "key.version_disabled",
          "key.version_enabled",
          "key.version_revoked",
        ],
      );
      for (const row of rows) assert.equal(row.created_at, h.clock.now());
    });
  });
}
