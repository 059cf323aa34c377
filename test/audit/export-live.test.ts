import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { closedPort } from "../cli/helpers.ts";
import { keyParam, openComposedServer, type ComposedServer } from "./composed.ts";

/** Starts a SIEM stand-in on 127.0.0.1 that keeps every record it acknowledged, by sequence number. */
function startReceiver(port: number, seen: Map<number, string>): Promise<Server> {
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
        records: { seq: number; hash: string }[];
      };
      for (const record of body.records) seen.set(record.seq, record.hash);
      response.writeHead(200).end();
    });
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

async function tableHashes(h: ComposedServer): Promise<Map<number, string>> {
  const rows = await h.storage.db.selectFrom("audit_events").select(["seq", "hash"]).execute();
  return new Map(rows.map((row) => [Number(row.seq), row.hash ?? ""]));
}

async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms = 60_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(100);
  }
}

describe("exporters against the real log", () => {
  let h: ComposedServer;
  let port: number;
  let dir = "";
  const seen = new Map<number, string>();
  let receiver: Server | null = null;

  before(async () => {
    port = await closedPort();
    h = await openComposedServer({
      configYaml: (d) => {
        dir = d;
        return [
          "audit:",
          "  exporters:",
          "    - type: http",
          "      name: siem",
          `      url: http://127.0.0.1:${port}/ingest`,
          "      timeout: 2s",
          "    - type: file",
          "      name: local",
          `      path: ${join(d, "audit.jsonl")}`,
          "",
        ].join("\n");
      },
    });
  });
  after(async () => {
    await h.close();
    await new Promise((resolve) => (receiver === null ? resolve(null) : receiver.close(resolve)));
  });

  test("an exporter target down for a while then back receives every record", async () => {
    const created = await h.call("POST", "/v1/keys", { path: "live" });
    assert.equal(created.status, 201, created.text);
    await h.call("POST", "/v1/keys", { path: "live/app:encrypt" });
    for (let i = 0; i < 20; i++) {
      const issued = await h.call("POST", `/v1/keys/${keyParam("live/app:encrypt")}/data-key`, {});
      assert.equal(issued.status, 200, issued.text);
    }
    // The target is down: nothing arrived, and the cursor has not moved.
    await sleep(1_500);
    assert.equal(seen.size, 0);
    const cursor = await h.storage.db
      .selectFrom("audit_export_cursors")
      .select("seq")
      .where("exporter", "=", "siem")
      .executeTakeFirst();
    assert.equal(cursor?.seq ?? 0, 0);

    receiver = await startReceiver(port, seen);
    for (let i = 0; i < 5; i++) {
      await h.call("POST", `/v1/keys/${keyParam("live/app:encrypt")}/data-key`, {});
    }
    const table = await tableHashes(h);
    await until("the receiver has every record", () => {
      for (const seq of table.keys()) if (!seen.has(seq)) return false;
      return true;
    });
    for (const [seq, hash] of table) assert.equal(seen.get(seq), hash, `record ${seq}`);

    // The file exporter was never down, so it contains the same records, each line the stored JSON.
    await until("the file has every record", () => {
      const lines = readFileSync(join(dir, "audit.jsonl"), "utf8").trim().split("\n");
      return lines.length >= table.size;
    });
    const lines = readFileSync(join(dir, "audit.jsonl"), "utf8").trim().split("\n");
    const stored = await h.storage.db
      .selectFrom("audit_events")
      .select(["seq", "record"])
      .orderBy("seq")
      .execute();
    for (const row of stored.slice(0, table.size)) {
      assert.equal(lines[Number(row.seq) - 1], row.record, `line ${row.seq}`);
    }
  });
});
