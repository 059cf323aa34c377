import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";

import { openUnsealedServer, type Initialised, type ServerHarness } from "./harness.ts";

describe("real listener", () => {
  let harness: ServerHarness & Initialised;
  let base: string;

  before(async () => {
    harness = await openUnsealedServer();
    await harness.app.listen({ host: "127.0.0.1", port: 0 });
    const { port } = harness.app.server.address() as AddressInfo;
    base = `http://127.0.0.1:${port}`;
  });

  after(async () => {
    await harness.close();
  });

  test("health over TCP", async () => {
    const response = await fetch(`${base}/v1/sys/health`, { headers: { "x-request-id": "tcp-1" } });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("x-request-id"), "tcp-1");
    assert.equal(response.headers.get("cache-control"), "no-store");
    assert.deepEqual(await response.json(), {
      initialized: true,
      sealed: false,
      storage: "ok",
      root: "unsealed",
    });
  });

  test("encrypted round trip over TCP", async () => {
    const headers = {
      authorization: `Bearer ${harness.rootToken}`,
      "content-type": "application/json",
    };
    for (const path of ["prod", "prod/ledger:encrypt"]) {
      const created = await fetch(`${base}/v1/keys`, {
        method: "POST",
        headers,
        body: JSON.stringify({ path }),
      });
      assert.equal(created.status, 201, await created.text());
    }

    const plaintext = Buffer.from("over the wire").toString("base64");
    const sealed = await fetch(`${base}/v1/keys/prod%2Fledger%3Aencrypt/encrypt`, {
      method: "POST",
      headers,
      body: JSON.stringify({ plaintext }),
    });
    assert.equal(sealed.status, 200, await sealed.clone().text());
    const { ciphertext } = (await sealed.json()) as { ciphertext: string };

    const opened = await fetch(`${base}/v1/decrypt`, {
      method: "POST",
      headers,
      body: JSON.stringify({ ciphertext }),
    });
    assert.equal(opened.status, 200);
    assert.equal(((await opened.json()) as { plaintext: string }).plaintext, plaintext);
  });

  test("oversized body over TCP", async () => {
    const response = await fetch(`${base}/v1/decrypt`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${harness.rootToken}`,
        "content-type": "application/json",
      },
      body: JSON.stringify({ ciphertext: "x".repeat(harness.deps.limits.maxBodyBytes) }),
    });
    assert.equal(response.status, 413);
    const body = (await response.json()) as { error: { code: string; requestId: string } };
    assert.equal(body.error.code, "PAYLOAD_TOO_LARGE");
    assert.equal(body.error.requestId, response.headers.get("x-request-id"));
  });

  test("bad percent-encoding over TCP", async () => {
    const response = await fetch(`${base}/v1/keys/%E0%A4%A`, {
      headers: { authorization: `Bearer ${harness.rootToken}` },
    });
    assert.equal(response.status, 400);
    const body = (await response.json()) as { error: { code: string; requestId: string } };
    assert.equal(body.error.code, "INVALID_ARGUMENT");
    assert.equal(body.error.requestId, response.headers.get("x-request-id"));
  });
});
