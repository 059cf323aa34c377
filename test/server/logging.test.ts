import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { createLogger, REDACTED } from "../../src/server/logger.ts";
import { bearer, LogCapture, openUnsealedServer } from "./harness.ts";

describe("logging", () => {
  test("logger redacts secret fields", () => {
    const capture = new LogCapture();
    const logger = createLogger({ destination: capture });
    logger.info(
      {
        token: "s1-token",
        nested: { share: "s2-share", deeper: { plaintext: "s3-plaintext" } },
        headers: { authorization: "Bearer s4-header" },
        req: { body: { password: "s5-password" } },
        a: { b: { c: { d: { rootToken: "s6-deep" } } } },
        keyId: "key_visible",
      },
      "redaction check",
    );

    assert.equal(capture.lines.length, 1);
    for (const secret of [
      "s1-token",
      "s2-share",
      "s3-plaintext",
      "s4-header",
      "s5-password",
      "s6-deep",
    ]) {
      assert.ok(!capture.text.includes(secret), `${secret} reached the log: ${capture.text}`);
    }
    assert.ok(capture.text.includes(REDACTED));
    assert.ok(capture.text.includes("key_visible"), "non-secret fields must stay");
  });

  test("secrets sent in requests never reach the log", async () => {
    const harness = await openUnsealedServer();
    const { app, rootToken, shares, logs } = harness;
    const root = bearer(rootToken);
    try {
      for (const path of ["prod", "prod/acme", "prod/acme/billing:encrypt"]) {
        const created = await app.inject({
          method: "POST",
          url: "/v1/keys",
          headers: root,
          payload: { path },
        });
        assert.equal(created.statusCode, 201, created.body);
      }
      const key = encodeURIComponent("prod/acme/billing:encrypt");

      const operator = await app.inject({
        method: "POST",
        url: "/v1/operator/tokens",
        headers: root,
        payload: { name: "ci" },
      });
      const operatorToken = operator.json<{ token: string }>().token;
      await app.inject({ method: "GET", url: "/v1/keys", headers: bearer(operatorToken) });

      const plaintextText = "correct horse battery staple";
      const plaintext = Buffer.from(plaintextText).toString("base64");
      const sealed = await app.inject({
        method: "POST",
        url: `/v1/keys/${key}/encrypt`,
        headers: root,
        payload: { plaintext, context: { tenant: "acme" } },
      });
      assert.equal(sealed.statusCode, 200, sealed.body);
      const opened = await app.inject({
        method: "POST",
        url: "/v1/decrypt",
        headers: root,
        payload: { ciphertext: sealed.json<{ ciphertext: string }>().ciphertext },
      });
      assert.equal(opened.json<{ plaintext: string }>().plaintext, plaintext);

      const dataKey = await app.inject({
        method: "POST",
        url: `/v1/keys/${key}/data-key`,
        headers: root,
      });
      const issued = dataKey.json<{ plaintext: string; wrappedDataKey: string }>();

      const unknownToken = `arbor_op_${"Z".repeat(43)}_ZZZZZZ`;
      await app.inject({ method: "GET", url: "/v1/keys", headers: bearer(unknownToken) });
      await app.inject({
        method: "GET",
        url: "/v1/keys",
        headers: { authorization: `Bearer ${plaintextText.replace(/ /g, "-")}` },
      });
      // Rejected bodies: malformed JSON around a share, a share in a wrongly typed request, a
      // plaintext next to a nonce, and a plaintext that is too large.
      await app.inject({
        method: "POST",
        url: "/v1/sys/unseal",
        headers: { "content-type": "application/json" },
        payload: `{"nonce": "n", "share": "${shares[3]}", `,
      });
      await app.inject({
        method: "POST",
        url: "/v1/sys/unseal",
        payload: { nonce: 5, share: shares[4] },
      });
      await app.inject({
        method: "POST",
        url: `/v1/keys/${key}/encrypt`,
        headers: root,
        payload: { plaintext, nonce: "AAAAAAAAAAAAAAAA" },
      });
      await app.inject({
        method: "POST",
        url: `/v1/keys/${key}/encrypt`,
        headers: root,
        payload: { plaintext: plaintext.repeat(400) },
      });

      // The requests above were logged, so the search below runs over real output.
      const records = logs.records();
      assert.ok(
        records.some((r) => r.errorCode === "UNAUTHENTICATED"),
        "no 401 line",
      );
      assert.ok(
        records.some((r) => r.route === "/v1/sys/unseal" && r.errorCode === "INVALID_ARGUMENT"),
        "no line for the rejected unseal bodies",
      );
      assert.ok(
        records.some((r) => r.errorCode === "UNSUPPORTED_FIELD"),
        "no nonce line",
      );
      const secrets: Array<[string, string]> = [
        ["root token", rootToken],
        ["operator token", operatorToken],
        ["unknown token", unknownToken],
        ["plaintext", plaintextText],
        ["plaintext base64", plaintext],
        ["data key", issued.plaintext],
        ["wrapped data key", issued.wrappedDataKey],
        ...shares.map((share, index): [string, string] => [`share ${index + 1}`, share]),
      ];
      for (const [label, secret] of secrets) {
        assert.ok(!logs.text.includes(secret), `the ${label} reached the log`);
      }
      assert.ok(!/authorization|bearer/i.test(logs.text), "a header reached the log");
    } finally {
      await harness.close();
    }
  });
});
