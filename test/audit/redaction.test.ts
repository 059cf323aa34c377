import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { loadConfig } from "../../src/config/index.ts";
import { openServer, type ServerHarness } from "../server/harness.ts";

describe("secrets outside the audit log", () => {
  let h: ServerHarness;
  before(async () => {
    h = await openServer();
  });
  after(() => h.close());

  test("a secret in a mistyped URL is not logged", async () => {
    const secret = "arbor_op_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG_1a2b3c4d";
    const response = await h.app.inject({ method: "GET", url: `/v1/key/${secret}` });
    assert.equal(response.statusCode, 404);
    assert.equal(h.logs.text.includes(secret), false, h.logs.text);
    assert.match(h.logs.text, /arbor_op_\[redacted\]/);
  });

  test("an exporter URL error hides its password and query", async () => {
    const yaml = [
      "audit:",
      "  exporters:",
      "    - type: http",
      "      name: siem",
      "      url: ftp://user:hunter2@127.0.0.1/ingest?apikey=s3cret",
      "",
    ].join("\n");
    const dir = mkdtempSync(join(tmpdir(), "arbor-redaction-"));
    const file = join(dir, "arbor.yaml");
    writeFileSync(file, yaml);
    const error = await loadConfig({ file, env: {} }).then(
      () => null,
      (caught: unknown) => caught as Error,
    );
    assert.ok(error !== null, "the configuration was accepted");
    assert.equal(error.message.includes("hunter2"), false, error.message);
    assert.equal(error.message.includes("s3cret"), false, error.message);
    assert.match(error.message, /audit\.exporters\[0\]\.url/);
    rmSync(dir, { recursive: true, force: true });
  });
});
