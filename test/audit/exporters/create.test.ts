import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";

import { createExporters } from "../../../src/audit/exporters/index.ts";
import type { ExporterConfig } from "../../../src/config/index.ts";
import { isArborError } from "../../../src/errors/index.ts";
import {
  FAST,
  MemoryCursorStore,
  MemorySource,
  RecordingLogger,
  range,
  waitFor,
} from "./helpers.ts";
import { StreamReceiver } from "./syslog-receiver.ts";

const dir = mkdtempSync(join(tmpdir(), "arbor-create-exporters-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function deps() {
  return {
    source: new MemorySource(),
    cursors: new MemoryCursorStore(),
    logger: new RecordingLogger(),
    tuning: FAST,
  };
}

void describe("createExporters", () => {
  void test("createExporters builds one exporter per entry", async () => {
    const receiver = new StreamReceiver();
    await receiver.start();
    const path = join(dir, "audit.jsonl");
    const exporters: ExporterConfig[] = [
      { type: "file", name: "local", path, maxBytes: 1_000_000, maxFiles: 2 },
      {
        type: "syslog",
        name: "rsyslog",
        transport: "tcp",
        host: "127.0.0.1",
        port: receiver.port,
        facility: "local0",
        maxMessageBytes: 2048,
        timeoutMs: 2000,
        caFile: null,
        sdId: "audit@32473",
      },
    ];
    const d = deps();
    const runner = await createExporters({ audit: { exporters } }, { ...d, hostname: "node-1" });
    assert.deepEqual(runner.exporters, ["local", "rsyslog"]);

    d.source.append(12);
    runner.start();
    runner.wake();
    await waitFor(
      () => d.cursors.peek("local") === 12 && d.cursors.peek("rsyslog") === 12,
      "both exporters at 12",
    );
    await waitFor(() => receiver.frames.length === 12, "twelve syslog messages received");
    await runner.stop();
    await receiver.stop();

    const lines = readFileSync(path, "utf8").split("\n").filter(Boolean);
    assert.deepEqual(
      lines.map((line) => (JSON.parse(line) as { seq: number }).seq),
      range(1, 12),
    );
    assert.equal(receiver.frames.length, 12);
    assert.equal(receiver.frames[0]!.hostname, "node-1");
    assert.equal(receiver.frames[0]!.sdId, "audit@32473");
    assert.equal(receiver.frames[0]!.pri, 16 * 8 + 6);
  });

  void test("createExporters with no entries does nothing", async () => {
    const runner = await createExporters({ audit: { exporters: [] } }, deps());
    assert.deepEqual(runner.exporters, []);
    runner.start();
    runner.wake();
    await runner.stop();
  });

  void test("missing CA file fails at creation", async () => {
    const caFile = join(dir, "absent-ca.pem");
    const exporters: ExporterConfig[] = [
      {
        type: "syslog",
        name: "tls",
        transport: "tls",
        host: "127.0.0.1",
        port: 6514,
        facility: "authpriv",
        maxMessageBytes: 2048,
        timeoutMs: 2000,
        caFile,
        sdId: "arbor@32473",
      },
    ];
    await assert.rejects(
      createExporters({ audit: { exporters } }, deps()),
      (error: unknown) =>
        isArborError(error, "INVALID_ARGUMENT") &&
        error.detail.parameter === "audit.exporters[0].ca_file" &&
        error.message.includes("ENOENT"),
    );
  });

  void test("empty bearer token file fails at creation", async () => {
    const tokenFile = join(dir, "empty-token");
    writeFileSync(tokenFile, "\n");
    const exporters: ExporterConfig[] = [
      { type: "file", name: "local", path: join(dir, "x.jsonl"), maxBytes: 1000, maxFiles: 1 },
      {
        type: "http",
        name: "siem",
        url: "http://127.0.0.1:9/ingest",
        headers: {},
        bearerTokenFile: tokenFile,
        timeoutMs: 1000,
      },
    ];
    await assert.rejects(
      createExporters({ audit: { exporters } }, deps()),
      (error: unknown) =>
        isArborError(error, "INVALID_ARGUMENT") &&
        error.detail.parameter === "audit.exporters[1].bearer_token_file" &&
        error.message.includes("empty"),
    );
  });
});
