import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, describe, test } from "node:test";

import {
  DeliveryError,
  encodeBatch,
  ExportRunner,
  HttpSink,
  type HttpSinkOptions,
} from "../../../src/audit/exporters/index.ts";
import { parseRetryAfter } from "../../../src/audit/exporters/http.ts";
import {
  FAST,
  MemoryCursorStore,
  MemorySource,
  RecordingLogger,
  RecordingMetrics,
  deduplicate,
  makeRecord,
  range,
  waitFor,
} from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "arbor-http-export-"));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Entry {
  seq: number;
  hash: string;
  type: string;
  record: Record<string, unknown>;
}

interface Received {
  headers: IncomingHttpHeaders;
  raw: string;
  entries: Entry[];
}

/**
 * An HTTP receiver on 127.0.0.1. `status` sets the response status of every request; `stop()` closes the
 * listener and its connections, so clients get connection refused until `start()`.
 */
class Receiver {
  readonly accepted: Received[] = [];
  readonly answered: number[] = [];
  status = 200;
  extraHeaders: Record<string, string> = {};
  /** When true, requests get no response at all. */
  silent = false;
  port = 0;
  #server: Server | null = null;

  async start(): Promise<void> {
    const server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        if (this.silent) return;
        const raw = Buffer.concat(chunks).toString("utf8");
        this.answered.push(this.status);
        if (this.status >= 200 && this.status < 300) {
          const body = JSON.parse(raw) as { records: Entry[] };
          this.accepted.push({ headers: request.headers, raw, entries: body.records });
        }
        response.writeHead(this.status, this.extraHeaders);
        response.end(this.status < 300 ? "" : "an error page");
      });
    });
    this.#server = server;
    await new Promise<void>((resolve) => server.listen(this.port, "127.0.0.1", () => resolve()));
    this.port = (server.address() as AddressInfo).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/ingest`;
  }

  get seqs(): number[] {
    return this.accepted.flatMap((request) => request.entries.map((entry) => entry.seq));
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    if (server === null) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function receiver(): Promise<Receiver> {
  const r = new Receiver();
  await r.start();
  cleanups.push(() => r.stop());
  return r;
}

function sinkOptions(url: string, overrides: Partial<HttpSinkOptions> = {}): HttpSinkOptions {
  return { name: "siem", url, headers: {}, bearerTokenFile: null, timeoutMs: 2000, ...overrides };
}

function exportTo(options: HttpSinkOptions) {
  const source = new MemorySource();
  const cursors = new MemoryCursorStore();
  const metrics = new RecordingMetrics();
  const logger = new RecordingLogger();
  const runner = new ExportRunner({
    ...FAST,
    batchSize: 7,
    source,
    cursors,
    metrics,
    logger,
    sinks: [new HttpSink(options)],
  });
  cleanups.push(() => runner.stop());
  runner.start();
  return { source, cursors, metrics, logger, runner };
}

void describe("HttpSink", () => {
  void test("exporter outage loses no record", async () => {
    const target = await receiver();
    const tokenFile = join(dir, "token");
    writeFileSync(tokenFile, "s3cr3t-token\n");
    const e = exportTo(sinkOptions(target.url, { bearerTokenFile: tokenFile }));

    e.source.append(10);
    e.runner.wake();
    await waitFor(() => e.cursors.peek("siem") === 10, "first ten delivered");

    // Down: the listener is closed, so connections are refused.
    await target.stop();
    e.source.append(10, { type: "token.issued" });
    e.runner.wake();
    await waitFor(() => e.metrics.failureCount("siem", "unavailable") >= 3, "refused requests");
    assert.equal(e.cursors.peek("siem"), 10);

    // Back, but responding with 500 for a while.
    target.status = 500;
    await target.start();
    await waitFor(() => target.answered.filter((s) => s === 500).length >= 3, "three 500s");
    e.source.append(10);
    e.runner.wake();
    assert.equal(e.cursors.peek("siem"), 10, "a 500 does not move the cursor");

    target.status = 200;
    await waitFor(() => e.cursors.peek("siem") === 30, "all thirty delivered");

    assert.deepEqual(deduplicate(target.seqs), range(1, 30));
    assert.deepEqual(target.seqs, range(1, 30), "each seq once, in order");
    assert.equal(e.metrics.delivered.get("siem"), 30);
    assert.equal(e.metrics.failureCount("siem", "rejected"), 0);
    assert.ok(e.logger.entries.some((entry) => entry.message === "audit export recovered"));
  });

  void test("http body carries seq, hash and the record", async () => {
    const target = await receiver();
    const sink = new HttpSink(
      sinkOptions(target.url, { headers: { "X-Source": "arbor-test", Authorization: "Splunk t" } }),
    );
    const records = [makeRecord(1), makeRecord(2, { details: { city: "Zürich \u2028" } })];
    await sink.deliver(records);
    await sink.close();

    const [request] = target.accepted;
    assert.ok(request !== undefined);
    assert.equal(request.headers["content-type"], "application/json");
    assert.equal(request.headers["x-source"], "arbor-test");
    assert.equal(request.headers.authorization, "Splunk t");
    assert.deepEqual(
      request.entries.map((entry) => [entry.seq, entry.hash, entry.type]),
      records.map((r) => [r.seq, r.hash, r.type]),
    );
    records.forEach((record, i) => {
      assert.deepEqual(request.entries[i]!.record, JSON.parse(record.json));
      assert.ok(request.raw.includes(`"record":${record.json}}`), "stored bytes unchanged");
    });
    assert.equal(request.raw, encodeBatch(records));
  });

  void test("http bearer token is read from its file", async () => {
    const target = await receiver();
    const tokenFile = join(dir, "rotating-token");
    writeFileSync(tokenFile, "first\n");
    const sink = new HttpSink(sinkOptions(target.url, { bearerTokenFile: tokenFile }));
    await sink.deliver([makeRecord(1)]);
    writeFileSync(tokenFile, "second");
    await sink.deliver([makeRecord(2)]);
    await sink.close();

    assert.deepEqual(
      target.accepted.map((request) => request.headers.authorization),
      ["Bearer first", "Bearer second"],
    );
  });

  void test("http 4xx is counted as rejected and retried", async () => {
    const target = await receiver();
    target.status = 401;
    const e = exportTo(sinkOptions(target.url));
    e.source.append(3);
    e.runner.wake();

    await waitFor(() => e.metrics.failureCount("siem", "rejected") >= 2, "two rejections");
    assert.equal(e.logger.at("error").length, 1, "logged once as an error");
    assert.match(String((e.logger.at("error")[0]!.details.err as Error).message), /401/);
    target.status = 204;
    await waitFor(() => e.cursors.peek("siem") === 3, "delivered after the fix");
    assert.deepEqual(target.answered.slice(-1), [204]);
  });

  void test("http 408 and 429 count as unavailable", async () => {
    const target = await receiver();
    const sink = new HttpSink(sinkOptions(target.url));
    cleanups.push(() => sink.close());
    for (const status of [408, 429, 503]) {
      target.status = status;
      await assert.rejects(
        sink.deliver([makeRecord(1)]),
        (error: unknown) => error instanceof DeliveryError && error.reason === "unavailable",
        `status ${status}`,
      );
    }
  });

  void test("http Retry-After sets the delay", async () => {
    const target = await receiver();
    target.status = 429;
    target.extraHeaders = { "retry-after": "7" };
    const sink = new HttpSink(sinkOptions(target.url));
    cleanups.push(() => sink.close());
    await assert.rejects(
      sink.deliver([makeRecord(1)]),
      (error: unknown) => error instanceof DeliveryError && error.retryAfterMs === 7000,
    );

    const now = Date.UTC(2026, 0, 1);
    assert.equal(parseRetryAfter("Thu, 01 Jan 2026 00:00:30 GMT", now), 30_000);
    assert.equal(parseRetryAfter("soon", now), null);
    assert.equal(parseRetryAfter(null, now), null);
  });

  void test("http redirect is not followed", async () => {
    const elsewhere = await receiver();
    const target = await receiver();
    target.status = 307;
    target.extraHeaders = { location: elsewhere.url };
    const sink = new HttpSink(sinkOptions(target.url));
    cleanups.push(() => sink.close());

    await assert.rejects(
      sink.deliver([makeRecord(1)]),
      (error: unknown) =>
        error instanceof DeliveryError &&
        error.reason === "rejected" &&
        /redirect/.test(error.message),
    );
    assert.equal(elsewhere.answered.length, 0);
  });

  void test("http request times out", async () => {
    const target = await receiver();
    target.silent = true;
    const sink = new HttpSink(sinkOptions(target.url, { timeoutMs: 100 }));
    cleanups.push(() => sink.close());

    const started = Date.now();
    await assert.rejects(
      sink.deliver([makeRecord(1)]),
      (error: unknown) =>
        error instanceof DeliveryError && /timed out after 100 ms/.test(error.message),
    );
    assert.ok(Date.now() - started < 2000);
  });

  void test("http close aborts the request in flight", async () => {
    const target = await receiver();
    target.silent = true;
    const sink = new HttpSink(sinkOptions(target.url, { timeoutMs: 10_000 }));
    const delivery = sink.deliver([makeRecord(1)]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await sink.close();

    await assert.rejects(delivery, (error: unknown) => /closed/.test((error as Error).message));
  });

  void test("missing bearer token file fails the delivery", async () => {
    const target = await receiver();
    const sink = new HttpSink(sinkOptions(target.url, { bearerTokenFile: join(dir, "absent") }));
    cleanups.push(() => sink.close());
    await assert.rejects(
      sink.deliver([makeRecord(1)]),
      (error: unknown) => error instanceof DeliveryError && /ENOENT/.test(error.message),
    );
    assert.equal(target.answered.length, 0);
  });
});
