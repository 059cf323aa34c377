import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { sql } from "kysely";

import { errorRegistry } from "../../src/errors/index.ts";
import {
  basicAuth,
  keyParam,
  openComposedServer,
  type ComposedServer,
  type HttpResult,
} from "./composed.ts";

const KEY = "outage/app:encrypt";

/** Ways to make the real audit store refuse writes, and to undo them. */
const OUTAGES = [
  {
    name: "trigger rejecting inserts",
    start: (server: ComposedServer) =>
      sql`create trigger audit_outage before insert on audit_events begin select raise(abort, 'audit store unwritable'); end`.execute(
        server.storage.db,
      ),
    stop: (server: ComposedServer) => sql`drop trigger audit_outage`.execute(server.storage.db),
  },
  {
    name: "read-only connection",
    start: (server: ComposedServer) => sql`pragma query_only = on`.execute(server.storage.db),
    stop: (server: ComposedServer) => sql`pragma query_only = off`.execute(server.storage.db),
  },
] as const;

/** Response fields that would carry a credential or data. */
const HANDED_OUT = ["plaintext", "wrappedDataKey", "ciphertext", "access_token", "dataKeyId"];

function assertNothingHandedOut(response: HttpResult): void {
  for (const field of HANDED_OUT) {
    assert.ok(!response.text.includes(field), `the 503 body carries ${field}: ${response.text}`);
  }
}

function assertAuditUnavailable(response: HttpResult): void {
  assert.equal(response.status, 503, response.text);
  assert.deepEqual(Object.keys(response.body as object), ["error"], response.text);
  assert.equal(response.body.error.code, "AUDIT_UNAVAILABLE", response.text);
  assertNothingHandedOut(response);
}

for (const outage of OUTAGES) {
  describe(`unwritable audit store: ${outage.name}`, () => {
    let server: ComposedServer;
    let service: { id: string; clientSecret: string };

    async function count(table: "issuances" | "keys" | "audit_events"): Promise<number> {
      const row = await server.storage.db
        .selectFrom(table)
        .select(sql<number>`count(*)`.as("n"))
        .executeTakeFirstOrThrow();
      return Number(row.n);
    }

    /** Runs `request` during the outage and checks that it changed no table. */
    async function duringOutage(request: () => Promise<HttpResult>): Promise<HttpResult> {
      const before = {
        issuances: await count("issuances"),
        keys: await count("keys"),
        events: await count("audit_events"),
      };
      await outage.start(server);
      let response: HttpResult;
      try {
        response = await request();
      } finally {
        await outage.stop(server);
      }
      assert.deepEqual(
        {
          issuances: await count("issuances"),
          keys: await count("keys"),
          events: await count("audit_events"),
        },
        before,
        "rows were written during the outage",
      );
      return response;
    }

    before(async () => {
      server = await openComposedServer();
      for (const path of ["outage", KEY, "outage/app:sign"]) {
        const created = await server.call("POST", "/v1/keys", { path });
        assert.equal(created.status, 201, created.text);
      }
      const created = await server.call("POST", "/v1/services", {
        name: "app",
        environment: "outage",
        service: "app",
        audiences: ["https://app.example"],
      });
      assert.equal(created.status, 201, created.text);
      service = created.body;
    });

    after(async () => {
      await server.close();
    });

    test("data key is refused with 503", async () => {
      const response = await duringOutage(() =>
        server.call("POST", `/v1/keys/${keyParam(KEY)}/data-key`, {}),
      );
      assertAuditUnavailable(response);
    });

    test("encrypt is refused with 503", async () => {
      const response = await duringOutage(() =>
        server.call("POST", `/v1/keys/${keyParam(KEY)}/encrypt`, {
          plaintext: Buffer.from("must not be encrypted").toString("base64"),
        }),
      );
      assertAuditUnavailable(response);
    });

    test("access token is refused with 503", async () => {
      const response = await duringOutage(() =>
        server.form(
          "/v1/oauth/token",
          { grant_type: "client_credentials" },
          basicAuth(service.id, service.clientSecret),
        ),
      );
      assert.equal(response.status, 503, response.text);
      assert.deepEqual(response.body, {
        error: errorRegistry.AUDIT_UNAVAILABLE.oauth,
        error_description: response.body.error_description,
      });
      assertNothingHandedOut(response);
    });

    test("key creation is refused with 503", async () => {
      const response = await duringOutage(() =>
        server.call("POST", "/v1/keys", { path: "outage/other:encrypt" }),
      );
      assertAuditUnavailable(response);
      const shown = await server.call("GET", `/v1/keys/${keyParam("outage/other:encrypt")}`);
      assert.equal(shown.status, 404, shown.text);
    });

    test("service works again after the outage", async () => {
      const issued = await server.call("POST", `/v1/keys/${keyParam(KEY)}/data-key`, {});
      assert.equal(issued.status, 200, issued.text);
      const token = await server.form(
        "/v1/oauth/token",
        { grant_type: "client_credentials" },
        basicAuth(service.id, service.clientSecret),
      );
      assert.equal(token.status, 200, token.text);
    });
  });
}

describe("key change whose record cannot be written", () => {
  let server: ComposedServer;

  before(async () => {
    server = await openComposedServer();
  });

  after(async () => {
    await server.close();
  });

  test("key creation is 503 and rolls back", async () => {
    // Only the key change's own record fails, so the request's failure record can still be written.
    await sql`create trigger key_change_outage before insert on audit_events when new.type = 'key.created' and new.outcome = 'success' begin select raise(abort, 'audit store unwritable'); end`.execute(
      server.storage.db,
    );
    let response: HttpResult;
    try {
      response = await server.call("POST", "/v1/keys", { path: "refused" });
    } finally {
      await sql`drop trigger key_change_outage`.execute(server.storage.db);
    }
    assertAuditUnavailable(response);

    const keys = await server.storage.db
      .selectFrom("keys")
      .select("id")
      .where("path", "=", "refused")
      .execute();
    assert.deepEqual(keys, [], "the key was created without its record");
    const records = await server.storage.db
      .selectFrom("audit_events")
      .select(["type", "outcome", "error_code"])
      .where("request_id", "=", response.requestId)
      .execute();
    assert.deepEqual(records, [
      { type: "key.created", outcome: "failure", error_code: "AUDIT_UNAVAILABLE" },
    ]);
  });
});
