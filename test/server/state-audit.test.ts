import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { REQUEST_ID_HEADER } from "../../src/server/plugins/request-id.ts";
import { bearer, openUnsealedServer, type Initialised, type ServerHarness } from "./harness.ts";

describe("state changes and their records", () => {
  let h: ServerHarness & Initialised;

  before(async () => {
    h = await openUnsealedServer();
  });
  after(() => h.close());

  async function recordsOf(requestId: string) {
    return h.storage.db
      .selectFrom("audit_events")
      .select(["type", "outcome", "principal_type", "credential_id", "key_id"])
      .where("request_id", "=", requestId)
      .execute();
  }

  test("an operator token's creation and revocation each leave exactly one record", async () => {
    const created = await h.app.inject({
      method: "POST",
      url: "/v1/operator/tokens",
      headers: bearer(h.rootToken),
      payload: { name: "ci", ttl: "1h" },
    });
    assert.equal(created.statusCode, 201, created.body);
    const { id } = created.json<{ id: string }>();
    const createdRecords = await recordsOf(String(created.headers[REQUEST_ID_HEADER]));
    assert.deepEqual(
      createdRecords.map((r) => [r.type, r.outcome, r.principal_type, r.credential_id]),
      [["operator_token.created", "success", "operator", id]],
    );

    const revoked = await h.app.inject({
      method: "DELETE",
      url: `/v1/operator/tokens/${id}`,
      headers: bearer(h.rootToken),
    });
    assert.equal(revoked.statusCode, 200, revoked.body);
    const revokedRecords = await recordsOf(String(revoked.headers[REQUEST_ID_HEADER]));
    assert.deepEqual(
      revokedRecords.map((r) => [r.type, r.credential_id]),
      [["operator_token.revoked", id]],
    );
  });

  test("a key creation leaves one record, written with the key", async () => {
    const response = await h.app.inject({
      method: "POST",
      url: "/v1/keys",
      headers: bearer(h.rootToken),
      payload: { path: "staging" },
    });
    assert.equal(response.statusCode, 201, response.body);
    const { id } = response.json<{ id: string }>();
    const records = await recordsOf(String(response.headers[REQUEST_ID_HEADER]));
    assert.deepEqual(
      records.map((r) => [r.type, r.key_id]),
      [["key.created", id]],
    );
  });

  test("a failed audit write leaves no key behind", async () => {
    h.audit.failing = true;
    try {
      const response = await h.app.inject({
        method: "POST",
        url: "/v1/keys",
        headers: bearer(h.rootToken),
        payload: { path: "qa" },
      });
      assert.equal(response.statusCode, 503, response.body);
    } finally {
      h.audit.failing = false;
    }
    const key = await h.storage.db
      .selectFrom("keys")
      .select("id")
      .where("path", "=", "qa")
      .executeTakeFirst();
    assert.equal(key, undefined);
  });
});
