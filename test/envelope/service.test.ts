import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { isArborError } from "../../src/errors/index.ts";
import { createEnvelopeService, type EnvelopeService } from "../../src/envelope/service.ts";
import { dialects } from "../helpers/dialects.ts";
import { openTree, type TreeHarness } from "../helpers/tree.ts";

const ALL = { environment: null, tenant: null };
const ACME = { environment: "prod", tenant: "acme" };

function rejectsWith(code: string) {
  return (error: unknown) => {
    assert.ok(isArborError(error), `expected an ArborError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return true;
  };
}

function textBytes(text: string): Buffer {
  return Buffer.from(text.slice(text.indexOf(":", 6) + 1), "base64url");
}

function withBytes(prefix: string, bytes: Uint8Array): string {
  return prefix + Buffer.from(bytes).toString("base64url");
}

for (const dialect of dialects) {
  describe(`envelope service on ${dialect.name}`, { skip: dialect.skip }, () => {
    let h: TreeHarness;
    let envelope: EnvelopeService;

    before(async () => {
      h = await openTree(dialect);
      for (const path of [
        "prod",
        "prod/acme",
        "prod/globex",
        "prod/acme/billing:encrypt",
        "prod/globex/billing:encrypt",
        "prod/acme/billing:sign",
      ]) {
        await h.tree.createKey(path);
      }
      await h.tree.createKey("prod/acme/derived:encrypt", { mode: "derived" });
      envelope = createEnvelopeService({ keyTree: h.tree });
    });
    after(() => h.close());

    test("data key round trip binds context", async () => {
      const context = { tenant: "acme", purpose: "invoices" };
      const issued = await envelope.generateDataKey("prod/acme/billing", context, ACME);
      assert.equal(issued.plaintext.length, 32);
      assert.match(issued.wrappedDataKey, /^arbor:dk1:[A-Za-z0-9_-]+$/);
      assert.match(issued.dataKeyId, /^dk_[a-z2-7]{26}$/);
      assert.equal(issued.chain.length, 4);
      assert.match(issued.chain[0]!, /^root@1$/);
      assert.equal(issued.chain[3], `${issued.keyId}@1`);

      const opened = await envelope.decryptDataKey(
        issued.wrappedDataKey,
        { purpose: "invoices", tenant: "acme" },
        ACME,
      );
      assert.deepEqual(opened.plaintext, issued.plaintext);
      assert.equal(opened.dataKeyId, issued.dataKeyId);

      await assert.rejects(
        envelope.decryptDataKey(issued.wrappedDataKey, { tenant: "acme" }, ACME),
        rejectsWith("DECRYPTION_FAILED"),
      );
      await assert.rejects(
        envelope.decryptDataKey(issued.wrappedDataKey, {}, ACME),
        rejectsWith("DECRYPTION_FAILED"),
      );
    });

    test("wrapped data key moved to another key fails", async () => {
      const issued = await envelope.generateDataKey("prod/acme/billing:encrypt", {}, ALL);
      const other = await h.tree.resolveKey("prod/globex/billing:encrypt");
      const bytes = textBytes(issued.wrappedDataKey);
      bytes.set(Buffer.from(other.id), 1);
      await assert.rejects(
        envelope.decryptDataKey(withBytes("arbor:dk1:", bytes), {}, ALL),
        rejectsWith("DECRYPTION_FAILED"),
      );

      const flipped = textBytes(issued.wrappedDataKey);
      // Every byte, including the key id and version that pick the unwrapping key.
      for (let index = 0; index < flipped.length; index++) {
        const copy = Buffer.from(flipped);
        copy[index]! ^= 1;
        await assert.rejects(
          envelope.decryptDataKey(withBytes("arbor:dk1:", copy), {}, ALL),
          rejectsWith("DECRYPTION_FAILED"),
          `byte ${index}`,
        );
      }
      await assert.rejects(
        envelope.decryptDataKey("arbor:dk1:", {}, ALL),
        rejectsWith("INVALID_ARGUMENT"),
      );
      await assert.rejects(envelope.decryptDataKey("not a key", {}, ALL), (error: unknown) => {
        assert.ok(isArborError(error, "INVALID_ARGUMENT"));
        assert.ok(!error.message.includes("not a key"), "the wrapped key is not quoted back");
        assert.equal(error.detail.value, "(9 characters)");
        return true;
      });
    });

    test("another tenant's key is not found, its ciphertext does not open", async () => {
      await assert.rejects(
        envelope.encrypt("prod/globex/billing", new Uint8Array(4), {}, ACME),
        rejectsWith("KEY_NOT_FOUND"),
      );
      const foreign = await envelope.encrypt(
        "prod/globex/billing",
        Buffer.from("globex secret"),
        {},
        ALL,
      );
      // The key is named by the ciphertext, so out of scope is a failed decryption.
      await assert.rejects(
        envelope.decrypt(foreign.ciphertext, undefined, ACME),
        rejectsWith("DECRYPTION_FAILED"),
      );
      const dk = await envelope.generateDataKey("prod/globex/billing", {}, ALL);
      await assert.rejects(
        envelope.decryptDataKey(dk.wrappedDataKey, {}, ACME),
        rejectsWith("DECRYPTION_FAILED"),
      );
      await assert.rejects(
        envelope.rewrap(foreign.ciphertext, undefined, ACME),
        rejectsWith("DECRYPTION_FAILED"),
      );
    });

    test("payload round trip and rotation", async () => {
      const plaintext = Buffer.from("invoice 42: 1,337.00 EUR");
      const sealed = await envelope.encrypt(
        "prod/acme/billing",
        plaintext,
        { invoice: "42" },
        ACME,
      );
      assert.match(sealed.ciphertext, /^arbor:v1:/);
      await h.tree.rotate("prod/acme/billing:encrypt");
      const opened = await envelope.decrypt(sealed.ciphertext, { invoice: "42" }, ACME);
      assert.deepEqual(Buffer.from(opened.plaintext), plaintext);
      assert.deepEqual(opened.context, { invoice: "42" });
      assert.equal(opened.keyVersion, sealed.keyVersion);
      await assert.rejects(
        envelope.decrypt(sealed.ciphertext, { invoice: "43" }, ACME),
        rejectsWith("DECRYPTION_FAILED"),
      );
      await assert.rejects(
        envelope.decrypt(sealed.ciphertext, { invoice: 43 } as never, ACME),
        rejectsWith("INVALID_ARGUMENT"),
      );

      const derived = await envelope.encrypt("prod/acme/derived", plaintext, {}, ACME);
      assert.deepEqual(
        Buffer.from((await envelope.decrypt(derived.ciphertext, undefined, ACME)).plaintext),
        plaintext,
      );
    });

    test("truncated tag fails with the one code", async () => {
      const sealed = await envelope.encrypt("prod/acme/billing", Buffer.from("short"), {}, ACME);
      const bytes = textBytes(sealed.ciphertext);
      for (const cut of [1, 4, 12, 15, 16]) {
        const text = withBytes("arbor:v1:", bytes.subarray(0, bytes.length - cut));
        await assert.rejects(
          envelope.decrypt(text, undefined, ACME),
          rejectsWith("DECRYPTION_FAILED"),
          `cut ${cut}`,
        );
      }
    });

    test("rewrap moves ciphertext off a revoked version", async () => {
      await h.tree.createKey("prod/acme/rw:encrypt");
      const plaintext = Buffer.from("rotate me");
      const sealed = await envelope.encrypt("prod/acme/rw", plaintext, { a: "1" }, ACME);
      const dk = await envelope.generateDataKey("prod/acme/rw", { a: "1" }, ACME);
      await h.tree.rotate("prod/acme/rw:encrypt");
      await h.tree.revokeVersion("prod/acme/rw:encrypt", 1);

      await assert.rejects(
        envelope.decrypt(sealed.ciphertext, undefined, ACME),
        rejectsWith("KEY_STATE_CONFLICT"),
      );
      await assert.rejects(
        envelope.decryptDataKey(dk.wrappedDataKey, { a: "1" }, ACME),
        rejectsWith("KEY_STATE_CONFLICT"),
      );

      const moved = await envelope.rewrap(sealed.ciphertext, { a: "1" }, ACME);
      assert.equal(moved.keyVersion, 2);
      assert.deepEqual(
        Buffer.from((await envelope.decrypt(moved.ciphertext, { a: "1" }, ACME)).plaintext),
        plaintext,
      );
      const movedKey = await envelope.rewrapDataKey(dk.wrappedDataKey, { a: "1" }, ACME);
      assert.equal(movedKey.keyVersion, 2);
      assert.equal(movedKey.dataKeyId, dk.dataKeyId);
      assert.deepEqual(
        (await envelope.decryptDataKey(movedKey.wrappedDataKey, { a: "1" }, ACME)).plaintext,
        dk.plaintext,
      );
    });

    test("disabled version refuses decrypt and rewrap", async () => {
      await h.tree.createKey("prod/acme/dis:encrypt");
      const sealed = await envelope.encrypt("prod/acme/dis", Buffer.from("x"), {}, ACME);
      await h.tree.rotate("prod/acme/dis:encrypt");
      await h.tree.disableVersion("prod/acme/dis:encrypt", 1);
      await assert.rejects(
        envelope.decrypt(sealed.ciphertext, undefined, ACME),
        rejectsWith("KEY_STATE_CONFLICT"),
      );
      await assert.rejects(
        envelope.rewrap(sealed.ciphertext, undefined, ACME),
        rejectsWith("KEY_STATE_CONFLICT"),
      );
      await h.tree.enableVersion("prod/acme/dis:encrypt", 1);
      await envelope.decrypt(sealed.ciphertext, undefined, ACME);
    });

    test("sign key cannot encrypt", async () => {
      await assert.rejects(
        envelope.encrypt("prod/acme/billing:sign", new Uint8Array(1), {}, ACME),
        rejectsWith("PURPOSE_MISMATCH"),
      );
      await assert.rejects(
        envelope.generateDataKey("prod/acme", {}, ACME),
        rejectsWith("PURPOSE_MISMATCH"),
      );
    });
  });
}
