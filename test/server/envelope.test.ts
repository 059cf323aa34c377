import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import type { FastifyInstance } from "fastify";

import { DECRYPTION_FAILED_MESSAGE } from "../../src/errors/index.ts";
import {
  assertError,
  bearer,
  openUnsealedServer,
  type Initialised,
  type ServerHarness,
} from "./harness.ts";

const KEY = encodeURIComponent("prod/acme/billing:encrypt");
const CONTEXT = { tenant: "acme", table: "invoices" };

interface DataKey {
  keyId: string;
  keyVersion: number;
  dataKeyId: string;
  plaintext?: string;
  wrappedDataKey: string;
}

interface Sealed {
  ciphertext: string;
  keyId: string;
  keyVersion: number;
}

function base64(text: string): string {
  return Buffer.from(text).toString("base64");
}

/** Rewrites the binary envelope inside a text-form ciphertext. */
function alterEnvelope(ciphertext: string, change: (bytes: Buffer) => Buffer): string {
  const prefix = "arbor:v1:";
  assert.ok(ciphertext.startsWith(prefix));
  const bytes = Buffer.from(ciphertext.slice(prefix.length), "base64url");
  return prefix + change(bytes).toString("base64url");
}

describe("envelope routes", () => {
  let harness: ServerHarness & Initialised;
  let app: FastifyInstance;
  let root: Record<string, string>;

  async function post<T>(url: string, payload: object, headers = root): Promise<T> {
    const response = await app.inject({ method: "POST", url, headers, payload });
    assert.equal(response.statusCode, url === "/v1/keys" ? 201 : 200, `${url}: ${response.body}`);
    return response.json<T>();
  }

  before(async () => {
    harness = await openUnsealedServer();
    app = harness.app;
    root = bearer(harness.rootToken);
    for (const path of [
      "prod",
      "prod/acme",
      "prod/globex",
      "prod/acme/billing:encrypt",
      "prod/acme/billing:sign",
    ]) {
      await post("/v1/keys", { path });
    }
  });

  after(async () => {
    await harness.close();
  });

  test("data key round trip", async () => {
    const issued = await post<DataKey>(`/v1/keys/${KEY}/data-key`, { context: CONTEXT });
    assert.equal(Buffer.from(issued.plaintext!, "base64").length, 32);
    assert.match(issued.wrappedDataKey, /^arbor:dk1:/);
    assert.equal(issued.keyVersion, 1);

    const opened = await post<{ plaintext: string; keyId: string }>("/v1/data-key/decrypt", {
      wrappedDataKey: issued.wrappedDataKey,
      context: CONTEXT,
    });
    assert.equal(opened.plaintext, issued.plaintext);
    assert.equal(opened.keyId, issued.keyId);

    const wrongContext = await app.inject({
      method: "POST",
      url: "/v1/data-key/decrypt",
      headers: root,
      payload: { wrappedDataKey: issued.wrappedDataKey, context: { tenant: "globex" } },
    });
    const error = assertError(wrongContext, 400, "DECRYPTION_FAILED");
    assert.equal(error.message, DECRYPTION_FAILED_MESSAGE);

    const [event] = harness.audit
      .ofType("data_key.issued")
      .filter((e) => e.credentialId === issued.dataKeyId);
    assert.ok(event, "no data_key.issued event");
    assert.equal(event.keyId, issued.keyId);
    assert.equal(event.chain.at(-1), `${issued.keyId}@1`);
    assert.ok(!JSON.stringify(event).includes(issued.plaintext!), "the data key is in the event");

    const issuance = await harness.storage.db
      .selectFrom("issuances")
      .selectAll()
      .where("id", "=", issued.dataKeyId)
      .executeTakeFirst();
    assert.ok(issuance, "the issuance was not recorded");
  });

  test("wrapped data key has no plaintext", async () => {
    const response = await app.inject({
      method: "POST",
      url: `/v1/keys/${KEY}/data-key/wrapped`,
      headers: root,
    });
    assert.equal(response.statusCode, 200, response.body);
    const issued = response.json<DataKey>();
    assert.equal(issued.plaintext, undefined);
    assert.deepEqual(Object.keys(issued).sort(), [
      "dataKeyId",
      "keyId",
      "keyVersion",
      "wrappedDataKey",
    ]);
  });

  test("purpose may be implied", async () => {
    const issued = await post<DataKey>(
      `/v1/keys/${encodeURIComponent("prod/acme/billing")}/data-key/wrapped`,
      {},
    );
    const byFullPath = await app.inject({ method: "GET", url: `/v1/keys/${KEY}`, headers: root });
    assert.equal(issued.keyId, byFullPath.json<{ id: string }>().id);
  });

  test("encrypt and decrypt", async () => {
    const sealed = await post<Sealed>(`/v1/keys/${KEY}/encrypt`, {
      plaintext: base64("invoice 42"),
      context: CONTEXT,
    });
    assert.match(sealed.ciphertext, /^arbor:v1:[A-Za-z0-9_-]+$/);

    const opened = await post<{ plaintext: string; context: Record<string, string> }>(
      "/v1/decrypt",
      { ciphertext: sealed.ciphertext },
    );
    assert.equal(Buffer.from(opened.plaintext, "base64").toString(), "invoice 42");
    assert.deepEqual(opened.context, CONTEXT);

    const checked = await post<{ plaintext: string }>("/v1/decrypt", {
      ciphertext: sealed.ciphertext,
      context: { table: "invoices", tenant: "acme" },
    });
    assert.equal(checked.plaintext, opened.plaintext);

    const mismatch = await app.inject({
      method: "POST",
      url: "/v1/decrypt",
      headers: root,
      payload: { ciphertext: sealed.ciphertext, context: { tenant: "acme" } },
    });
    assertError(mismatch, 400, "DECRYPTION_FAILED");
  });

  test("empty plaintext round trip", async () => {
    const sealed = await post<Sealed>(`/v1/keys/${KEY}/encrypt`, { plaintext: "" });
    const opened = await post<{ plaintext: string }>("/v1/decrypt", {
      ciphertext: sealed.ciphertext,
    });
    assert.equal(opened.plaintext, "");
  });

  test("truncated tag fails uniformly", async () => {
    const sealed = await post<Sealed>(`/v1/keys/${KEY}/encrypt`, { plaintext: base64("secret") });
    const variants: Array<[string, string]> = [4, 12, 15].map((kept) => [
      `tag cut to ${kept} bytes`,
      alterEnvelope(sealed.ciphertext, (bytes) => bytes.subarray(0, bytes.length - (16 - kept))),
    ]);
    variants.push([
      "last byte flipped",
      alterEnvelope(sealed.ciphertext, (bytes) => {
        const copy = Buffer.from(bytes);
        copy[copy.length - 1]! ^= 1;
        return copy;
      }),
    ]);

    for (const [label, ciphertext] of variants) {
      const response = await app.inject({
        method: "POST",
        url: "/v1/decrypt",
        headers: root,
        payload: { ciphertext },
      });
      assert.equal(response.statusCode, 400, `${label}: ${response.body}`);
      const error = response.json<{ error: { code: string; message: string } }>().error;
      assert.equal(error.code, "DECRYPTION_FAILED", label);
      assert.equal(error.message, DECRYPTION_FAILED_MESSAGE, label);
    }
  });

  test("rewrap moves to the primary version", async () => {
    const sealed = await post<Sealed>(`/v1/keys/${KEY}/encrypt`, {
      plaintext: base64("before rotation"),
      context: CONTEXT,
    });
    const issued = await post<DataKey>(`/v1/keys/${KEY}/data-key`, { context: CONTEXT });
    await post(`/v1/keys/${KEY}/rotate`, {});

    const rewrapped = await post<Sealed>("/v1/rewrap", { ciphertext: sealed.ciphertext });
    assert.equal(rewrapped.keyVersion, sealed.keyVersion + 1);
    const opened = await post<{ plaintext: string; keyVersion: number }>("/v1/decrypt", {
      ciphertext: rewrapped.ciphertext,
    });
    assert.equal(Buffer.from(opened.plaintext, "base64").toString(), "before rotation");
    assert.equal(opened.keyVersion, rewrapped.keyVersion);

    const rewrappedKey = await post<DataKey>("/v1/data-key/rewrap", {
      wrappedDataKey: issued.wrappedDataKey,
      context: CONTEXT,
    });
    assert.equal(rewrappedKey.keyVersion, issued.keyVersion + 1);
    const reopened = await post<{ plaintext: string }>("/v1/data-key/decrypt", {
      wrappedDataKey: rewrappedKey.wrappedDataKey,
      context: CONTEXT,
    });
    assert.equal(reopened.plaintext, issued.plaintext);
    assert.ok(harness.audit.ofType("crypto.rewrap").length >= 2);
  });

  test("sign key cannot make data keys", async () => {
    const response = await app.inject({
      method: "POST",
      url: `/v1/keys/${encodeURIComponent("prod/acme/billing:sign")}/data-key`,
      headers: root,
    });
    assertError(response, 400, "PURPOSE_MISMATCH");
  });

  test("other tenant cannot decrypt", async () => {
    const sealed = await post<Sealed>(`/v1/keys/${KEY}/encrypt`, {
      plaintext: base64("acme only"),
    });
    const created = await app.inject({
      method: "POST",
      url: "/v1/operator/tokens",
      headers: root,
      payload: { name: "globex", environment: "prod", tenant: "globex" },
    });
    const globex = bearer(created.json<{ token: string }>().token);

    const decrypt = await app.inject({
      method: "POST",
      url: "/v1/decrypt",
      headers: globex,
      payload: { ciphertext: sealed.ciphertext },
    });
    assertError(decrypt, 400, "DECRYPTION_FAILED");
    assert.ok(!decrypt.body.includes(base64("acme only")));

    const issue = await app.inject({
      method: "POST",
      url: `/v1/keys/${KEY}/data-key`,
      headers: globex,
    });
    assertError(issue, 404, "KEY_NOT_FOUND", "key");
  });

  test("audit outage hands out nothing", async () => {
    const issuancesBefore = await harness.storage.db.selectFrom("issuances").selectAll().execute();
    harness.audit.failing = true;
    try {
      for (const url of [`/v1/keys/${KEY}/data-key`, `/v1/keys/${KEY}/encrypt`]) {
        const response = await app.inject({
          method: "POST",
          url,
          headers: root,
          payload: url.endsWith("encrypt") ? { plaintext: base64("x") } : {},
        });
        assertError(response, 503, "AUDIT_UNAVAILABLE");
        assert.ok(!response.body.includes("plaintext"), response.body);
        assert.ok(!response.body.includes("arbor:"), response.body);
      }
    } finally {
      harness.audit.failing = false;
    }
    const issuancesAfter = await harness.storage.db.selectFrom("issuances").selectAll().execute();
    assert.equal(issuancesAfter.length, issuancesBefore.length);
  });

  test("issuances are counted", async () => {
    const metrics = harness.deps.metrics;
    // prom-client returns its live value objects, so read the numbers right away.
    const issued = async () =>
      (await metrics.issuances.get()).values.find((v) => v.labels.kind === "data_key")?.value ?? 0;
    const observed = async () =>
      (await metrics.issuanceDuration.get()).values.find(
        (v) =>
          v.metricName === "arbor_issuance_duration_seconds_count" && v.labels.kind === "data_key",
      )?.value ?? 0;

    const before = await issued();
    await post(`/v1/keys/${KEY}/data-key`, {});
    assert.equal(await issued(), before + 1);
    assert.equal(await observed(), before + 1);
    const successes = harness.audit
      .ofType("data_key.issued")
      .filter((event) => event.outcome === "success").length;
    assert.equal(await issued(), successes, "every counted issuance has its audit event");
  });
});
