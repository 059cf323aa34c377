import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { generateOpaqueSecret } from "../../src/crypto/index.ts";
import { basicAuth, openComposedServer, type ComposedServer, type HttpResult } from "./composed.ts";

const HMAC_PATTERN = /^hmac-sha256:[A-Za-z0-9_-]{43}$/;

interface Secret {
  /** What the secret is, for failure messages. */
  label: string;
  value: string;
  /** Raw bytes behind the text, when the text is an encoding of them (an unseal share). */
  bytes?: Buffer;
}

/** Returns the secret and the encodings a careless log line or event field could contain it in. */
function formsOf(secret: Secret): string[] {
  const text = Buffer.from(secret.value, "utf8");
  const forms = [
    secret.value,
    text.toString("base64"),
    text.toString("base64url"),
    text.toString("hex"),
  ];
  // The 43 random characters of an opaque secret are the secret even without the prefix.
  const random = /^arbor_[a-z]{2}_([0-9A-Za-z]{43})_/.exec(secret.value)?.[1];
  if (random !== undefined) forms.push(random);
  if (secret.bytes !== undefined) {
    forms.push(
      secret.bytes.toString("base64"),
      secret.bytes.toString("base64url"),
      secret.bytes.toString("hex"),
    );
  }
  return forms;
}

/** Returns the share with its y bytes changed: still well-formed, but not a share of this root. */
function wrongShare(share: string): { text: string; bytes: Buffer } {
  const bytes = Buffer.from(share, "base64");
  // The last byte is the x coordinate; the bytes before it are the share's value.
  for (let i = 0; i < bytes.length - 1; i++) bytes[i] = bytes[i]! ^ 0x5a;
  return { text: bytes.toString("base64"), bytes };
}

interface AuditRow {
  type: string;
  outcome: string;
  error_code: string | null;
  details: string;
}

describe("failed logins leave no secret behind", () => {
  let server: ComposedServer;
  const secrets: Secret[] = [];
  /** Request ids of the rejected operator-token requests, by the token they sent. */
  const operatorAttempts: Array<{ token: string; requestId: string }> = [];

  async function eventsOf(requestId: string): Promise<AuditRow[]> {
    return server.storage.db
      .selectFrom("audit_events")
      .select(["type", "outcome", "error_code", "details"])
      .where("request_id", "=", requestId)
      .orderBy("seq")
      .execute();
  }

  /** Sends `token` as an operator token and expects 401. */
  async function presentOperatorToken(token: string): Promise<HttpResult> {
    const response = await server.call("GET", "/v1/keys", undefined, { token });
    assert.equal(response.status, 401, response.text);
    operatorAttempts.push({ token, requestId: response.requestId });
    return response;
  }

  before(async () => {
    server = await openComposedServer();

    // Operator tokens: two well-formed unknown ones (one sent twice), and malformed ones.
    const unknownToken = generateOpaqueSecret("operator");
    const otherUnknownToken = generateOpaqueSecret("operator");
    const malformedToken = "arbor_op_this-is-not-a-token-but-a-secret-7Qx2";
    const garbageToken = "garbage-secret-Zq8x7Yw6Vu5";
    secrets.push(
      { label: "unknown operator token", value: unknownToken },
      { label: "second unknown operator token", value: otherUnknownToken },
      { label: "malformed operator token", value: malformedToken },
      { label: "garbage bearer token", value: garbageToken },
    );
    await presentOperatorToken(unknownToken);
    await presentOperatorToken(unknownToken);
    await presentOperatorToken(otherUnknownToken);
    await presentOperatorToken(malformedToken);
    const garbage = await server.call("GET", "/v1/keys", undefined, { token: garbageToken });
    assert.equal(garbage.status, 401, garbage.text);
    // Introspection authenticates its operator token itself.
    const introspected = await server.form(
      "/v1/oauth/introspect",
      { token: "x" },
      { authorization: `Bearer ${otherUnknownToken}` },
    );
    assert.equal(introspected.status, 401, introspected.text);

    // A wrong client secret with an existing client id, sent both ways RFC 6749 allows.
    for (const path of ["secrets", "secrets/app:sign"]) {
      const created = await server.call("POST", "/v1/keys", { path });
      assert.equal(created.status, 201, created.text);
    }
    const service = await server.call<{ id: string; clientSecret: string }>(
      "POST",
      "/v1/services",
      { name: "app", environment: "secrets", service: "app", audiences: ["https://app.example"] },
    );
    assert.equal(service.status, 201, service.text);
    const wrongSecret = generateOpaqueSecret("client");
    const otherWrongSecret = "not-the-client-secret-Hk29fPq";
    secrets.push(
      { label: "wrong client secret", value: wrongSecret },
      { label: "malformed client secret", value: otherWrongSecret },
      {
        label: "Basic credentials",
        value: `${service.body.id}:${wrongSecret}`,
      },
    );
    const basic = await server.form(
      "/v1/oauth/token",
      { grant_type: "client_credentials" },
      basicAuth(service.body.id, wrongSecret),
    );
    assert.equal(basic.status, 401, basic.text);
    const posted = await server.form("/v1/oauth/token", {
      grant_type: "client_credentials",
      client_id: service.body.id,
      client_secret: otherWrongSecret,
    });
    assert.equal(posted.status, 401, posted.text);
    const introspectAsClient = await server.form(
      "/v1/oauth/introspect",
      { token: "x" },
      basicAuth(service.body.id, wrongSecret),
    );
    assert.equal(introspectAsClient.status, 401, introspectAsClient.text);

    // Real secrets pasted where an id belongs: the routes record the id they were given.
    secrets.push(
      { label: "root token", value: server.rootToken },
      { label: "client secret", value: service.body.clientSecret },
    );
    const revokedToken = await server.call("DELETE", `/v1/operator/tokens/${server.rootToken}`);
    assert.equal(revokedToken.status, 400, revokedToken.text);
    const revokedSecret = await server.call(
      "DELETE",
      `/v1/services/${service.body.id}/secrets/${service.body.clientSecret}`,
    );
    assert.ok(revokedSecret.status >= 400, revokedSecret.text);
    for (const response of [revokedToken, revokedSecret]) {
      const events = await eventsOf(response.requestId);
      assert.equal(events.length, 1, JSON.stringify(events));
      assert.equal(events[0]!.outcome, "failure");
    }

    // A wrong unseal share (well-formed, another root's) and a malformed one.
    const share = wrongShare(server.shares[0]!);
    const malformedShare = "share-that-is-not-base64!Wd83";
    secrets.push(
      { label: "wrong unseal share", value: share.text, bytes: share.bytes },
      { label: "malformed unseal share", value: malformedShare },
    );
    await server.seal();
    const begun = await server.call("POST", "/v1/sys/unseal", {}, { token: null });
    assert.equal(begun.status, 200, begun.text);
    const nonce = begun.body.nonce as string;
    const malformed = await server.call(
      "POST",
      "/v1/sys/unseal",
      { nonce, share: malformedShare },
      { token: null },
    );
    assert.equal(malformed.status, 400, malformed.text);
    let last: HttpResult | undefined;
    for (const submitted of [share.text, ...server.shares.slice(1, 3)]) {
      last = await server.call(
        "POST",
        "/v1/sys/unseal",
        { nonce, share: submitted },
        { token: null },
      );
    }
    assert.ok(last !== undefined);
    assert.ok(last.status >= 400, `a wrong share unsealed the root: ${last.text}`);
    await server.unseal();
  });

  after(async () => {
    await server.close();
  });

  test("audit rows hold no secret", async () => {
    const rows = await server.storage.db.selectFrom("audit_events").selectAll().execute();
    assert.ok(rows.length > 20, `only ${rows.length} audit rows`);
    for (const row of rows) {
      for (const [column, value] of Object.entries(row)) {
        if (value === null) continue;
        const text = String(value);
        for (const secret of secrets) {
          for (const form of formsOf(secret)) {
            assert.ok(
              !text.includes(form),
              `the ${secret.label} reached column ${column} of audit record ${row.seq}`,
            );
          }
        }
      }
    }
  });

  test("log lines hold no secret", () => {
    assert.ok(server.logs.lines.length > 0, "nothing was logged");
    for (const [index, line] of server.logs.lines.entries()) {
      for (const secret of secrets) {
        for (const form of formsOf(secret)) {
          assert.ok(!line.includes(form), `the ${secret.label} reached log line ${index}: ${line}`);
        }
      }
    }
  });

  test("rejections are recorded with their codes", async () => {
    const rejected = await server.storage.db
      .selectFrom("audit_events")
      .select(["type", "outcome", "error_code"])
      .where("outcome", "!=", "success")
      .execute();
    const kinds = new Set(rejected.map((row) => `${row.type} ${row.error_code}`));
    for (const expected of [
      "auth.failed UNAUTHENTICATED",
      "token.rejected UNAUTHENTICATED",
      "token.issued UNAUTHENTICATED",
      "sys.unseal_attempted INVALID_SHARE",
    ]) {
      assert.ok(kinds.has(expected), `no ${expected} record: ${[...kinds].join(", ")}`);
    }
  });

  test("operator token failures carry an HMAC", async () => {
    const fingerprints = new Map<string, Set<string>>();
    for (const attempt of operatorAttempts) {
      const events = await eventsOf(attempt.requestId);
      assert.deepEqual(
        events.map((event) => [event.type, event.outcome, event.error_code]),
        [["auth.failed", "failure", "UNAUTHENTICATED"]],
      );
      const details = JSON.parse(events[0]!.details) as { credentialHmac?: unknown };
      assert.match(String(details.credentialHmac), HMAC_PATTERN);
      const seen = fingerprints.get(attempt.token) ?? new Set<string>();
      seen.add(details.credentialHmac as string);
      fingerprints.set(attempt.token, seen);
    }

    const perToken = [...fingerprints.values()];
    assert.equal(perToken.length, 3, "three distinct tokens were sent");
    for (const seen of perToken) {
      assert.equal(seen.size, 1, "the same token must always give the same HMAC");
    }
    const distinct = new Set(perToken.map((seen) => [...seen][0]));
    assert.equal(distinct.size, 3, "different tokens must give different HMACs");
  });
});
