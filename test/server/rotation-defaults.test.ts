import assert from "node:assert/strict";
import { test } from "node:test";

import { bearer, openUnsealedServer } from "./harness.ts";

test("sign key rotation is published first", async () => {
  const harness = await openUnsealedServer();
  try {
    const root = bearer(harness.rootToken);
    for (const path of ["prod", "prod/api:sign", "prod/api:encrypt"]) {
      const created = await harness.app.inject({
        method: "POST",
        url: "/v1/keys",
        headers: root,
        payload: { path },
      });
      assert.equal(created.statusCode, 201, created.body);
    }
    const rotate = (path: string) =>
      harness.app.inject({
        method: "POST",
        url: `/v1/keys/${encodeURIComponent(path)}/rotate`,
        headers: root,
        payload: {},
      });

    const sign = (await rotate("prod/api:sign")).json<{
      state: string;
      createdAt: string;
      activateAt: string;
    }>();
    assert.equal(sign.state, "pending");
    assert.equal(Date.parse(sign.activateAt) - Date.parse(sign.createdAt), 5 * 60_000);

    const encrypt = (await rotate("prod/api:encrypt")).json<{ state: string }>();
    assert.equal(encrypt.state, "primary");
  } finally {
    await harness.close();
  }
});
