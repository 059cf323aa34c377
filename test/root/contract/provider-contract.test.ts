import assert from "node:assert/strict";
import { createHash, createPublicKey, verify, type JsonWebKey } from "node:crypto";
import { afterEach, describe, test } from "node:test";

import { rootWrapAad } from "../../../src/hierarchy/binding.ts";
import {
  createKeyTree,
  MaterialCache,
  rewrapUnderNewRoot,
  type KeyTree,
} from "../../../src/hierarchy/index.ts";
import { assertArborError } from "../helpers.ts";
import { RecordingMetrics } from "../recording-metrics.ts";
import { providers, submitAll, type ProviderFixture } from "./providers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function digestOf(text: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(text).digest());
}

function verifies(jwk: JsonWebKey, digest: Uint8Array, signature: Uint8Array): boolean {
  return verify(null, digest, createPublicKey({ key: jwk, format: "jwk" }), signature);
}

for (const provider of providers) {
  void describe(`root provider contract: ${provider.name}`, { skip: provider.skip }, () => {
    let fixture: ProviderFixture | null = null;

    afterEach(async () => {
      await fixture?.close();
      fixture = null;
    });

    async function unsealed(options: { metrics?: RecordingMetrics } = {}) {
      fixture = await provider.open(options);
      await fixture.initialize();
      const progress = await submitAll(fixture.root, fixture.secrets());
      assert.equal(progress.unsealed, true);
      return fixture;
    }

    void test("initialize leaves the root sealed", async () => {
      fixture = await provider.open();
      const before = fixture.root.status();
      assert.equal(before.state, "uninitialized");
      assert.equal(before.provider, provider.name);
      assert.equal(before.rootVersion, null);

      await fixture.initialize();

      const after = fixture.root.status();
      assert.equal(after.state, "sealed");
      assert.equal(after.rootVersion, 1);
      await assertArborError(fixture.initialize(), "ALREADY_INITIALIZED");
    });

    void test("right secret unseals", async () => {
      fixture = await provider.open();
      await fixture.initialize();

      const progress = await submitAll(fixture.root, fixture.secrets());

      assert.equal(progress.unsealed, true);
      assert.equal(fixture.root.status().state, "unsealed");
      assert.equal(fixture.root.status().ceremony, null);
      await assertArborError(() => fixture!.root.beginUnseal(), "ALREADY_UNSEALED");
    });

    void test("wrong secret is UNSEAL_FAILED", async () => {
      fixture = await provider.open();
      await fixture.initialize();

      const error = await assertArborError(
        submitAll(fixture.root, fixture.wrongSecrets()),
        "UNSEAL_FAILED",
        /start a new one/,
      );

      assert.equal(error.status, 400);
      assert.equal(fixture.root.status().state, "sealed");
      assert.equal(fixture.root.status().ceremony, null, "the failed ceremony is discarded");
      const retry = await submitAll(fixture.root, fixture.secrets());
      assert.equal(retry.unsealed, true, "a new ceremony with the right secret still unseals");
    });

    void test("submission with a stale nonce is rejected", async () => {
      fixture = await provider.open();
      await fixture.initialize();
      fixture.root.beginUnseal();

      await assertArborError(
        fixture.root.submit("not-the-nonce", fixture.secrets()[0]!),
        "CEREMONY_NONCE_MISMATCH",
      );
      fixture.root.cancelUnseal();
      await assertArborError(
        fixture.root.submit("not-the-nonce", fixture.secrets()[0]!),
        "CEREMONY_NOT_FOUND",
      );
    });

    void test("wrap and unwrap round trip", async () => {
      const { root } = await unsealed();
      const plaintext = encoder.encode("master key material, 32 bytes!!");
      const aad = encoder.encode("prod v1");

      const blob = await root.wrap(plaintext, aad);
      const again = await root.wrap(plaintext, aad);
      const opened = await root.unwrap(blob, aad);

      assert.equal(blob.rootVersion, 1);
      assert.equal(blob.ciphertext.length, 12 + plaintext.length + 16);
      assert.notDeepEqual(again.ciphertext, blob.ciphertext, "each wrap uses a fresh IV");
      assert.equal(decoder.decode(opened), "master key material, 32 bytes!!");
      assert.ok(!Buffer.from(blob.ciphertext).includes(Buffer.from(plaintext)));
    });

    void test("wrong AAD is STORED_KEY_CORRUPT", async () => {
      const { root } = await unsealed();
      const blob = await root.wrap(encoder.encode("k"), encoder.encode("prod/acme"));

      const error = await assertArborError(
        root.unwrap(blob, encoder.encode("prod/other")),
        "STORED_KEY_CORRUPT",
        /^stored blob under root version 1 failed to unwrap/,
      );
      assert.equal(error.status, 500);
    });

    void test("tampered blob is STORED_KEY_CORRUPT", async () => {
      const { root } = await unsealed();
      const aad = encoder.encode("a");
      const blob = await root.wrap(encoder.encode("key material"), aad);

      // The IV, the ciphertext body and the tag.
      for (const index of [0, 12, blob.ciphertext.length - 1]) {
        const ciphertext = Uint8Array.from(blob.ciphertext);
        ciphertext[index] = ciphertext[index]! ^ 0x01;
        const error = await assertArborError(
          root.unwrap({ rootVersion: 1, ciphertext }, aad),
          "STORED_KEY_CORRUPT",
          /root version 1/,
        );
        assert.ok(!error.message.includes(Buffer.from(ciphertext).toString("hex").slice(0, 16)));
      }
      await assertArborError(
        root.unwrap({ rootVersion: 1, ciphertext: blob.ciphertext.subarray(0, 20) }, aad),
        "STORED_KEY_CORRUPT",
      );
      await assertArborError(
        root.unwrap({ rootVersion: 7, ciphertext: blob.ciphertext }, aad),
        "STORED_KEY_CORRUPT",
        /root version 7 failed to unwrap: that root version does not exist/,
      );
      assert.equal(decoder.decode(await root.unwrap(blob, aad)), "key material");
    });

    void test("sealed root rejects with SEALED", async () => {
      fixture = await provider.open();
      await fixture.initialize();
      const { root } = fixture;
      const aad = encoder.encode("a");

      await assertArborError(root.wrap(encoder.encode("k"), aad), "SEALED");
      await submitAll(root, fixture.secrets());
      const blob = await root.wrap(encoder.encode("k"), aad);

      root.seal();

      assert.equal(root.status().state, "sealed");
      await assertArborError(root.wrap(encoder.encode("k"), aad), "SEALED");
      await assertArborError(root.unwrap(blob, aad), "SEALED");
      await assertArborError(root.signCheckpoint(digestOf("head")), "SEALED");
      await assertArborError(root.rotate(), "SEALED");
      await submitAll(root, fixture.secrets());
      assert.equal(decoder.decode(await root.unwrap(blob, aad)), "k");
    });

    void test("rotate keeps old blobs opening", async () => {
      const { root } = await unsealed();
      const aad = encoder.encode("a");
      const old = await root.wrap(encoder.encode("old"), aad);

      const rotated = await root.rotate();
      const fresh = await root.wrap(encoder.encode("new"), aad);

      assert.equal(rotated.version, 2);
      assert.equal(root.status().rootVersion, 2);
      assert.equal(fresh.rootVersion, 2);
      assert.equal(decoder.decode(await root.unwrap(old, aad)), "old");
      assert.equal(decoder.decode(await root.unwrap(fresh, aad)), "new");
      await assertArborError(
        root.unwrap({ rootVersion: 2, ciphertext: old.ciphertext }, aad),
        "STORED_KEY_CORRUPT",
        /root version 2/,
      );
    });

    void test("restart unseals and opens old blobs", async () => {
      const setup = await unsealed();
      const aad = encoder.encode("a");
      const first = await setup.root.wrap(encoder.encode("v1"), aad);
      await setup.root.rotate();
      const second = await setup.root.wrap(encoder.encode("v2"), aad);

      const restarted = await setup.restart();
      assert.equal(restarted.status().state, "sealed");
      assert.equal(restarted.status().rootVersion, 2);
      await submitAll(restarted, setup.secrets());

      assert.equal(decoder.decode(await restarted.unwrap(first, aad)), "v1");
      assert.equal(decoder.decode(await restarted.unwrap(second, aad)), "v2");
      assert.equal((await restarted.wrap(encoder.encode("x"), aad)).rootVersion, 2);
    });

    void test("checkpoint signature verifies", async () => {
      const setup = await unsealed();
      const { root } = setup;
      const digest = digestOf("tree head 1");

      const signature = await root.signCheckpoint(digest);
      const jwk = await root.checkpointPublicKey();

      assert.equal(jwk.kty, "OKP");
      assert.equal(jwk.crv, "Ed25519");
      assert.equal(jwk.d, undefined, "the JWK has no private part");
      assert.equal(signature.length, 64);
      assert.ok(verifies(jwk, digest, signature));
      assert.ok(!verifies(jwk, digestOf("tree head 2"), signature), "another digest fails");
      await assertArborError(root.signCheckpoint(new Uint8Array()), "INVALID_ARGUMENT");

      await root.rotate();
      root.seal();
      assert.deepEqual(await root.checkpointPublicKey(), jwk, "known while sealed");
      await submitAll(root, setup.secrets());
      const later = await root.signCheckpoint(digestOf("tree head 3"));
      assert.ok(verifies(jwk, digestOf("tree head 3"), later), "same key after rotate");
    });

    void test("instrumentation counts calls", async () => {
      const metrics = new RecordingMetrics();
      const { root } = await unsealed({ metrics });
      const aad = encoder.encode("a");

      const blob = await root.wrap(encoder.encode("k"), aad);
      await root.unwrap(blob, aad);
      await root.unwrap(blob, encoder.encode("b")).catch(() => undefined);
      await root.signCheckpoint(digestOf("head"));
      root.status();

      assert.equal(metrics.count("initialize", "ok"), 1);
      assert.equal(metrics.count("beginUnseal", "ok"), 1);
      assert.equal(metrics.count("submit", "ok"), fixture!.secrets().length);
      assert.equal(metrics.count("wrap", "ok"), 1);
      assert.equal(metrics.count("unwrap", "ok"), 1);
      assert.equal(metrics.count("unwrap", "error"), 1);
      assert.equal(metrics.count("signCheckpoint", "ok"), 1);
      assert.equal(metrics.count("status", "ok"), 1);
      assert.ok(metrics.observations.every((o) => o.seconds >= 0));
    });

    void test("re-wrap moves masters to the new root version", async () => {
      const setup = await unsealed();
      const { root, storage, clock, logger } = setup;
      const cache = new MaterialCache({ clock, maxEntries: 100, ttlMs: 60_000 });
      const tree = createKeyTree({ storage, root, clock, cache, logger });
      await tree.createKey("prod");
      await tree.createKey("stage");
      await tree.rotate("prod");
      await tree.createKey("prod/acme");
      await tree.createKey("prod/acme/billing:encrypt");
      const material = await materialOf(tree, "prod/acme/billing:encrypt");
      await root.rotate();

      const progress: number[] = [];
      const result = await rewrapUnderNewRoot({
        storage,
        root,
        clock,
        logger,
        onProgress: (p) => void progress.push(p.done),
      });

      assert.equal(result.rootVersion, 2);
      assert.equal(result.rewrapped, 3, "prod v1, prod v2 and stage v1");
      assert.deepEqual(progress, [1, 2, 3]);
      assert.deepEqual(result.disabledVersions, provider.name === "pkcs11" ? [1] : []);
      const masters = await storage.db
        .selectFrom("key_versions")
        .select(["key_id", "version", "parent_version", "material"])
        .where("parent_key_id", "is", null)
        .execute();
      assert.equal(masters.length, 3);
      for (const master of masters) {
        assert.equal(master.parent_version, 2);
        const key = await storage.keys.findById(master.key_id);
        const opened = await root.unwrap(
          { rootVersion: 2, ciphertext: new Uint8Array(master.material!) },
          rootWrapAad({ keyId: master.key_id, version: master.version, purpose: key!.purpose }),
        );
        assert.equal(opened.length, 32);
      }

      cache.clear();
      assert.deepEqual(await materialOf(tree, "prod/acme/billing:encrypt"), material);
      const again = await rewrapUnderNewRoot({ storage, root, clock, logger });
      assert.equal(again.rewrapped, 0, "a second run finds nothing left");
    });
  });
}

async function materialOf(tree: KeyTree, path: string): Promise<Buffer> {
  const ref = await tree.primaryFor(path, "encrypt");
  return tree.withMaterial(ref, (material) => Buffer.from(material));
}
