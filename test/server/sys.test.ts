import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import type { LightMyRequestResponse } from "fastify";

import {
  assertError,
  bearer,
  initialise,
  openServer,
  openUnsealedServer,
  unseal,
  type ServerHarness,
} from "./harness.ts";

interface Health {
  initialized: boolean;
  sealed: boolean;
  storage: string;
  root: string;
}

interface UnsealAnswer {
  sealed: boolean;
  threshold: number;
  progress: number;
  nonce: string;
}

describe("sys routes", () => {
  let harness: ServerHarness | undefined;

  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  test("health follows the root state", async () => {
    harness = await openServer();
    const { app } = harness;

    const fresh = await app.inject({ method: "GET", url: "/v1/sys/health" });
    assert.equal(fresh.statusCode, 501);
    assert.deepEqual(fresh.json<Health>(), {
      initialized: false,
      sealed: true,
      storage: "ok",
      root: "uninitialized",
    });

    const { shares } = await initialise(app);
    const sealed = await app.inject({ method: "GET", url: "/v1/sys/health" });
    assert.equal(sealed.statusCode, 503);
    assert.deepEqual(sealed.json<Health>(), {
      initialized: true,
      sealed: true,
      storage: "ok",
      root: "sealed",
    });

    await unseal(app, shares);
    const ready = await app.inject({ method: "GET", url: "/v1/sys/health" });
    assert.equal(ready.statusCode, 200);
    assert.deepEqual(ready.json<Health>(), {
      initialized: true,
      sealed: false,
      storage: "ok",
      root: "unsealed",
    });
  });

  test("health reports storage outage", async () => {
    harness = await openUnsealedServer();
    await harness.storage.close();

    const response = await harness.app.inject({ method: "GET", url: "/v1/sys/health" });
    assert.equal(response.statusCode, 503);
    assert.equal(response.json<Health>().storage, "unavailable");
    assert.equal(response.json<Health>().root, "unsealed");
  });

  test("init works once", async () => {
    harness = await openServer();
    const first = await initialise(harness.app);
    assert.equal(first.shares.length, 5);
    assert.match(first.rootToken, /^arbor_op_/);

    const again = await harness.app.inject({
      method: "POST",
      url: "/v1/sys/init",
      payload: {},
    });
    assertError(again, 409, "ALREADY_INITIALIZED");
    assert.equal(harness.audit.ofType("sys.initialized").length, 2);
    assert.deepEqual(
      harness.audit.ofType("sys.initialized").map((event) => event.outcome),
      ["success", "failure"],
    );
  });

  test("init event never holds the shares or token", async () => {
    harness = await openServer();
    const { shares, rootToken } = await initialise(harness.app);
    const [event] = harness.audit.ofType("sys.initialized");
    const serialised = JSON.stringify(event);
    assert.ok(!serialised.includes(rootToken), "the root token is in the audit event");
    for (const share of shares) assert.ok(!serialised.includes(share), "a share is in the event");
    assert.match(event!.credentialId ?? "", /^opt_/);
  });

  test("unseal ceremony reports progress", async () => {
    harness = await openServer();
    const { app } = harness;
    const { shares, rootToken } = await initialise(app);

    const begun = await app.inject({ method: "POST", url: "/v1/sys/unseal" });
    assert.equal(begun.statusCode, 200, begun.body);
    const { nonce } = begun.json<UnsealAnswer>();
    assert.deepEqual(begun.json<UnsealAnswer>(), {
      sealed: true,
      threshold: 3,
      progress: 0,
      nonce,
    });

    const status = await app.inject({ method: "GET", url: "/v1/sys/seal-status" });
    assert.deepEqual(status.json(), {
      initialized: true,
      sealed: true,
      provider: "sealed",
      state: "sealed",
      threshold: 3,
      progress: 0,
      nonce,
    });

    for (const [index, share] of shares.slice(0, 3).entries()) {
      const submitted = await app.inject({
        method: "POST",
        url: "/v1/sys/unseal",
        payload: { nonce, share },
      });
      assert.equal(submitted.statusCode, 200, submitted.body);
      assert.equal(submitted.json<UnsealAnswer>().progress, index + 1);
      assert.equal(submitted.json<UnsealAnswer>().sealed, index < 2);
    }

    const keys = await app.inject({ method: "GET", url: "/v1/keys", headers: bearer(rootToken) });
    assert.equal(keys.statusCode, 200, keys.body);
    assert.equal(harness.audit.ofType("sys.unsealed").length, 1);
    const attempts = harness.audit.ofType("sys.unseal_attempted");
    assert.equal(attempts.length, 4);
    for (const share of shares) {
      assert.ok(!JSON.stringify(attempts).includes(share), "a share is in an audit event");
    }
  });

  test("wrong nonce leaves ceremony untouched", async () => {
    harness = await openServer();
    const { app, root } = harness;
    const { shares } = await initialise(app);
    const { nonce } = (
      await app.inject({ method: "POST", url: "/v1/sys/unseal" })
    ).json<UnsealAnswer>();
    await app.inject({
      method: "POST",
      url: "/v1/sys/unseal",
      payload: { nonce, share: shares[0] },
    });

    const wrong = await app.inject({
      method: "POST",
      url: "/v1/sys/unseal",
      payload: { nonce: "0".repeat(nonce.length), share: shares[1] },
    });
    const error = assertError(wrong, 400, "CEREMONY_NONCE_MISMATCH", "nonce");
    assert.ok(!error.message.includes(shares[1]!), "the share is in the message");

    assert.deepEqual(root.status().ceremony, { nonce, progress: 1, threshold: 3 });
    const failures = harness.audit
      .ofType("sys.unseal_attempted")
      .filter((event) => event.outcome === "failure");
    assert.equal(failures.length, 1);
    assert.equal(failures[0]!.errorCode, "CEREMONY_NONCE_MISMATCH");
  });

  test("share without nonce is rejected", async () => {
    harness = await openServer();
    const { shares } = await initialise(harness.app);
    const response = await harness.app.inject({
      method: "POST",
      url: "/v1/sys/unseal",
      payload: { share: shares[0] },
    });
    assertError(response, 400, "INVALID_ARGUMENT", "nonce");
  });

  test("invalid share is rejected without echo", async () => {
    harness = await openServer();
    await initialise(harness.app);
    const { nonce } = (
      await harness.app.inject({ method: "POST", url: "/v1/sys/unseal" })
    ).json<UnsealAnswer>();
    const response = await harness.app.inject({
      method: "POST",
      url: "/v1/sys/unseal",
      payload: { nonce, share: "not*base64" },
    });
    const error = assertError(response, 400, "INVALID_SHARE", "share");
    assert.equal(error.value, undefined);
    assert.ok(!response.body.includes("not*base64"));
  });

  test("unauthenticated cancel leaves ceremony untouched", async () => {
    harness = await openServer();
    const { app, root } = harness;
    const { shares, rootToken } = await initialise(app);
    const { nonce } = (
      await app.inject({ method: "POST", url: "/v1/sys/unseal" })
    ).json<UnsealAnswer>();
    await app.inject({
      method: "POST",
      url: "/v1/sys/unseal",
      payload: { nonce, share: shares[0] },
    });

    const anonymous = await app.inject({ method: "POST", url: "/v1/sys/unseal/cancel" });
    assertError(anonymous, 401, "UNAUTHENTICATED");
    const forged = await app.inject({
      method: "POST",
      url: "/v1/sys/unseal/cancel",
      headers: bearer(`arbor_op_${"A".repeat(43)}_AAAAAA`),
    });
    assertError(forged, 401, "UNAUTHENTICATED");
    assert.deepEqual(root.status().ceremony, { nonce, progress: 1, threshold: 3 });
    assert.equal(harness.audit.ofType("auth.failed").length, 2);
    assert.equal(harness.audit.ofType("sys.unseal_cancelled").length, 0);

    const cancelled = await app.inject({
      method: "POST",
      url: "/v1/sys/unseal/cancel",
      headers: bearer(rootToken),
    });
    assert.equal(cancelled.statusCode, 200, cancelled.body);
    assert.deepEqual(cancelled.json(), { sealed: true, progress: 0 });
    assert.equal(root.status().ceremony, null);
    assert.equal(harness.audit.ofType("sys.unseal_cancelled").length, 1);
  });

  test("unseal is rate-limited per address", async () => {
    harness = await openServer({ limits: { unsealAttemptsPerMinute: 2 } });
    await initialise(harness.app);
    for (let attempt = 0; attempt < 2; attempt++) {
      const allowed: LightMyRequestResponse = await harness.app.inject({
        method: "POST",
        url: "/v1/sys/unseal",
      });
      assert.equal(allowed.statusCode, 200, allowed.body);
    }
    const limited = await harness.app.inject({ method: "POST", url: "/v1/sys/unseal" });
    assertError(limited, 429, "RATE_LIMITED");
    assert.match(String(limited.headers["retry-after"]), /^\d+$/);
    const other = await harness.app.inject({
      method: "POST",
      url: "/v1/sys/unseal",
      remoteAddress: "127.0.0.2",
    });
    assert.equal(other.statusCode, 200, other.body);

    const failures = harness.audit
      .ofType("sys.unseal_attempted")
      .filter((event) => event.errorCode === "RATE_LIMITED");
    assert.equal(failures.length, 1);
  });

  test("sealed server refuses key routes", async () => {
    const unsealed = await openUnsealedServer();
    harness = unsealed;
    const { app, rootToken: token } = unsealed;
    const created = await app.inject({
      method: "POST",
      url: "/v1/keys",
      headers: bearer(token),
      payload: { path: "prod" },
    });
    assert.equal(created.statusCode, 201, created.body);

    const sealed = await app.inject({
      method: "POST",
      url: "/v1/sys/seal",
      headers: bearer(token),
    });
    assert.equal(sealed.statusCode, 200, sealed.body);
    assert.deepEqual(sealed.json(), { sealed: true });
    assert.equal(harness.audit.ofType("sys.sealed").length, 1);

    const requests = [
      { method: "GET", url: "/v1/keys" },
      { method: "GET", url: "/v1/keys/prod" },
      { method: "POST", url: "/v1/keys", payload: { path: "stage" } },
      { method: "POST", url: "/v1/keys/prod/rotate" },
      { method: "POST", url: "/v1/decrypt", payload: { ciphertext: "arbor:v1:AAAA" } },
      { method: "GET", url: "/v1/operator/tokens" },
    ] as const;
    for (const request of requests) {
      const response = await app.inject({ ...request, headers: bearer(token) });
      assertError(response, 503, "SEALED");
    }
    // Without a token too: the sealed response comes before authentication.
    assertError(await app.inject({ method: "GET", url: "/v1/keys" }), 503, "SEALED");

    const status = await app.inject({ method: "GET", url: "/v1/sys/seal-status" });
    assert.equal(status.json<{ sealed: boolean }>().sealed, true);
  });

  test("uninitialised server refuses key routes", async () => {
    harness = await openServer();
    const response = await harness.app.inject({ method: "GET", url: "/v1/keys" });
    assertError(response, 501, "NOT_INITIALIZED");
  });

  test("seal needs a writable operator", async () => {
    harness = await openUnsealedServer();
    const response = await harness.app.inject({ method: "POST", url: "/v1/sys/seal" });
    assertError(response, 401, "UNAUTHENTICATED");
    assert.equal(harness.root.status().state, "unsealed");
  });

  test("seal happens even when audit fails", async () => {
    const unsealed = await openUnsealedServer();
    harness = unsealed;
    const token = unsealed.rootToken;
    harness.audit.failing = true;
    const response = await harness.app.inject({
      method: "POST",
      url: "/v1/sys/seal",
      headers: bearer(token),
    });
    assertError(response, 503, "AUDIT_UNAVAILABLE");
    assert.equal(harness.root.status().state, "sealed");
  });

  test("metrics need an operator", async () => {
    const unsealed = await openUnsealedServer();
    harness = unsealed;
    const token = unsealed.rootToken;
    assertError(
      await harness.app.inject({ method: "GET", url: "/v1/sys/metrics" }),
      401,
      "UNAUTHENTICATED",
    );

    const response = await harness.app.inject({
      method: "GET",
      url: "/v1/sys/metrics",
      headers: bearer(token),
    });
    assert.equal(response.statusCode, 200);
    assert.match(response.headers["content-type"] as string, /^text\/plain/);
    for (const name of [
      "arbor_issuance_duration_seconds",
      "arbor_rotation_attempts_total",
      "arbor_token_validation_failures_total",
      "arbor_issuances_total",
      "arbor_audit_events_total",
      "arbor_revocation_propagation_seconds",
      "arbor_key_lifetime_violations",
      "arbor_scope_denials_total",
      "arbor_root_calls_total",
      "arbor_root_call_duration_seconds",
      "arbor_operations_total",
    ]) {
      assert.match(response.body, new RegExp(`^# TYPE ${name} `, "m"), `${name} is missing`);
    }
    assert.match(response.body, /^arbor_root_calls_total\{operation="submit",result="ok"\} 3$/m);
    assert.match(response.body, /^arbor_operations_total\{operation="sys.unseal"\} 4$/m);
    assert.match(
      response.body,
      /^arbor_audit_events_total\{type="sys.unseal_attempted",outcome="success"\} 4$/m,
    );
  });
});
