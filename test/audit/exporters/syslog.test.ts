import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, test } from "node:test";

import {
  createSyslogSink,
  DeliveryError,
  ExportRunner,
  formatSyslogMessage,
  type ExportRecord,
  type SyslogSinkOptions,
} from "../../../src/audit/exporters/index.ts";
import { frameOctetCounted, SEVERITY } from "../../../src/audit/exporters/syslog-format.ts";
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
import { DatagramReceiver, parseSyslog, StreamReceiver } from "./syslog-receiver.ts";

const tlsDir = join(import.meta.dirname, "../../data/tls");
const cert = readFileSync(join(tlsDir, "localhost.crt"), "utf8");
const key = readFileSync(join(tlsDir, "localhost.key"), "utf8");

const FORMAT = {
  facility: "authpriv",
  hostname: "audit-host",
  procId: "4242",
  structuredDataId: "arbor@32473",
} as const;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function options(overrides: Partial<SyslogSinkOptions>): SyslogSinkOptions {
  return {
    name: "syslog",
    transport: "tcp",
    host: "127.0.0.1",
    port: 0,
    facility: "authpriv",
    maxMessageBytes: 2048,
    timeoutMs: 2000,
    ca: null,
    hostname: "audit-host",
    ...overrides,
  };
}

interface Exporting {
  source: MemorySource;
  cursors: MemoryCursorStore;
  metrics: RecordingMetrics;
  runner: ExportRunner;
}

function exportTo(sinkOptions: SyslogSinkOptions, metrics = new RecordingMetrics()): Exporting {
  const source = new MemorySource();
  const cursors = new MemoryCursorStore();
  const sink = createSyslogSink({
    ...sinkOptions,
    onBodyOmitted: (records) => metrics.addTruncated(sinkOptions.name, records),
  });
  const runner = new ExportRunner({
    ...FAST,
    source,
    cursors,
    metrics,
    sinks: [sink],
    logger: new RecordingLogger(),
  });
  cleanups.push(() => runner.stop());
  runner.start();
  return { source, cursors, metrics, runner };
}

function recordOf(msg: Buffer | null): { seq: number } {
  assert.ok(msg !== null, "the message has a MSG part");
  return JSON.parse(msg.toString("utf8")) as { seq: number };
}

void describe("RFC 5424 format", () => {
  void test("syslog message carries the header fields", () => {
    const record = makeRecord(7, { type: "token.issued" });
    const frame = parseSyslog(formatSyslogMessage(record, FORMAT).bytes);

    assert.equal(frame.pri, 10 * 8 + SEVERITY.informational);
    assert.equal(frame.version, "1");
    assert.equal(frame.timestamp, "2026-01-01T00:00:07.000Z");
    assert.equal(frame.hostname, "audit-host");
    assert.equal(frame.appName, "arbor");
    assert.equal(frame.procId, "4242");
    assert.equal(frame.msgId, "token.issued");
    assert.equal(frame.sdId, "arbor@32473");
    assert.deepEqual(frame.params, { seq: "7", hash: record.hash });
    assert.equal(frame.msg?.toString("utf8"), record.json);
    assert.equal(frame.bom, false, "ASCII JSON has no BOM");
  });

  void test("syslog severity follows the outcome", () => {
    const severity = (outcome: "success" | "failure" | "denied" | null) =>
      parseSyslog(formatSyslogMessage(makeRecord(1, { outcome }), FORMAT).bytes).pri % 8;
    assert.equal(severity("success"), SEVERITY.informational);
    assert.equal(severity("failure"), SEVERITY.warning);
    assert.equal(severity("denied"), SEVERITY.notice);
    assert.equal(severity(null), SEVERITY.informational);
  });

  void test("syslog facility sets the priority", () => {
    const pri = (facility: "auth" | "local3" | "daemon") =>
      parseSyslog(formatSyslogMessage(makeRecord(1), { ...FORMAT, facility }).bytes).pri;
    assert.equal(pri("auth"), 4 * 8 + 6);
    assert.equal(pri("local3"), 19 * 8 + 6);
    assert.equal(pri("daemon"), 3 * 8 + 6);
  });

  void test("syslog message with non-ASCII JSON starts with a BOM", () => {
    const record = makeRecord(1, { details: { city: "Zürich" } });
    const frame = parseSyslog(formatSyslogMessage(record, FORMAT).bytes);
    assert.equal(frame.bom, true);
    assert.equal(frame.msg?.toString("utf8"), record.json);
  });

  void test("syslog header fields are made printable", () => {
    const record = { ...makeRecord(1), type: "a type with spaces and a very long name beyond 32" };
    const frame = parseSyslog(
      formatSyslogMessage(record, { ...FORMAT, hostname: "host name\u00e9" }).bytes,
    );
    assert.equal(frame.hostname, "hostname");
    assert.equal(frame.msgId, "atypewithspacesandaverylongnameb");
    assert.equal(frame.msgId.length, 32);
  });

  void test("syslog parameter values are escaped", () => {
    const record = { ...makeRecord(1), hash: 'a"b]c\\d' };
    const frame = parseSyslog(formatSyslogMessage(record, FORMAT).bytes);
    assert.equal(frame.params.hash, 'a"b]c\\d');
  });

  void test("oversized syslog message omits the JSON", () => {
    const record = makeRecord(1, { details: { padding: "x".repeat(3000) } });
    const message = formatSyslogMessage(record, FORMAT, 2048);
    const frame = parseSyslog(message.bytes);

    assert.equal(message.bodyOmitted, true);
    assert.ok(message.bytes.length <= 2048);
    assert.equal(frame.msg, null);
    assert.deepEqual(frame.params, {
      seq: "1",
      hash: record.hash,
      omitted_bytes: String(Buffer.byteLength(record.json)),
    });
    assert.equal(frame.msgId, "key.created");
  });

  void test("octet counting prefixes the byte length", () => {
    const framed = frameOctetCounted(Buffer.from("<86>1 ü", "utf8"));
    assert.equal(framed.toString("utf8"), "8 <86>1 ü");
  });
});

void describe("syslog over TCP", () => {
  void test("syslog TCP exporter survives a receiver outage", async () => {
    const receiver = new StreamReceiver();
    await receiver.start();
    cleanups.push(() => receiver.stop());
    const e = exportTo(options({ transport: "tcp", port: receiver.port }));

    e.source.append(20);
    e.runner.wake();
    await waitFor(() => receiver.frames.length === 20, "twenty messages");

    await receiver.stop();
    // Give the client time to see the close. A batch written while the peer closes is lost,
    // because syslog over TCP has no acknowledgement.
    await new Promise((resolve) => setTimeout(resolve, 100));
    e.source.append(20, { outcome: "failure", type: "auth.failed" });
    e.runner.wake();
    await waitFor(
      () => e.metrics.failureCount("syslog", "unavailable") >= 2,
      "refused connections",
    );
    assert.equal(e.cursors.peek("syslog"), 20);

    await receiver.start();
    await waitFor(() => e.cursors.peek("syslog") === 40, "all forty delivered");
    await waitFor(() => receiver.frames.length >= 40, "forty messages received");

    const seqs = receiver.frames.map((frame) => recordOf(frame.msg).seq);
    assert.deepEqual(deduplicate(seqs), range(1, 40));
    assert.deepEqual(
      receiver.frames.map((frame) => Number(frame.params.seq)),
      seqs,
      "structured data seq matches the record",
    );
    assert.equal(receiver.frames.at(-1)!.pri, 10 * 8 + SEVERITY.warning);
  });

  void test("syslog TLS exporter delivers to a trusted receiver", async () => {
    const receiver = new StreamReceiver({ cert, key });
    await receiver.start();
    cleanups.push(() => receiver.stop());
    const e = exportTo(options({ transport: "tls", port: receiver.port, ca: cert }));

    e.source.append(5);
    e.runner.wake();
    await waitFor(() => e.cursors.peek("syslog") === 5, "five delivered");
    // Delivered means the kernel took the bytes; the receiver may still be reading them.
    await waitFor(() => receiver.frames.length === 5, "five messages received");
    assert.deepEqual(
      receiver.frames.map((frame) => recordOf(frame.msg).seq),
      range(1, 5),
    );
  });

  void test("syslog TLS exporter rejects an untrusted receiver", async () => {
    const receiver = new StreamReceiver({ cert, key });
    await receiver.start();
    cleanups.push(() => receiver.stop());
    const sink = createSyslogSink(options({ transport: "tls", port: receiver.port, ca: null }));
    cleanups.push(() => sink.close());

    await assert.rejects(
      sink.deliver([makeRecord(1)]),
      (error: unknown) =>
        error instanceof DeliveryError &&
        error.reason === "unavailable" &&
        /certificate/i.test(error.message),
    );
    assert.equal(receiver.frames.length, 0);
  });

  void test("syslog TCP connection refused fails the delivery", async () => {
    const receiver = new StreamReceiver();
    await receiver.start();
    const port = receiver.port;
    await receiver.stop();
    const sink = createSyslogSink(options({ transport: "tcp", port }));
    cleanups.push(() => sink.close());

    await assert.rejects(
      sink.deliver([makeRecord(1)]),
      (error: unknown) => error instanceof DeliveryError && /ECONNREFUSED/.test(error.message),
    );
  });
});

void describe("syslog over UDP", () => {
  void test("syslog UDP exporter sends one message per datagram", async () => {
    const receiver = new DatagramReceiver();
    await receiver.start();
    cleanups.push(() => receiver.stop());
    const e = exportTo(options({ transport: "udp", port: receiver.port }));

    e.source.append(10);
    e.runner.wake();
    await waitFor(() => receiver.frames.length === 10, "ten datagrams");

    assert.deepEqual(
      receiver.frames.map((frame) => recordOf(frame.msg).seq),
      range(1, 10),
    );
    assert.deepEqual(
      receiver.frames.map((frame) => frame.params.seq),
      range(1, 10).map(String),
    );
  });

  void test("UDP receiver that went away is reported", async () => {
    const receiver = new DatagramReceiver();
    await receiver.start();
    const port = receiver.port;
    await receiver.stop();
    const sink = createSyslogSink(options({ transport: "udp", port }));
    cleanups.push(() => sink.close());

    await sink.deliver([makeRecord(1)]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await assert.rejects(
      sink.deliver([makeRecord(2)]),
      (error: unknown) =>
        error instanceof DeliveryError &&
        error.reason === "unavailable" &&
        /ECONNREFUSED/.test(error.message) &&
        /earlier datagram, which is lost/.test(error.message),
    );
    await sink.deliver([makeRecord(2)]);
  });

  void test("oversized record goes out without its JSON and is counted", async () => {
    const receiver = new DatagramReceiver();
    await receiver.start();
    cleanups.push(() => receiver.stop());
    const e = exportTo(options({ transport: "udp", port: receiver.port, maxMessageBytes: 1024 }));

    e.source.append(1);
    e.source.append(1, { details: { padding: "y".repeat(2000) } });
    e.source.append(1);
    e.runner.wake();
    await waitFor(() => receiver.frames.length === 3, "three datagrams");

    const [first, big, last] = receiver.frames as [
      (typeof receiver.frames)[0],
      (typeof receiver.frames)[0],
      (typeof receiver.frames)[0],
    ];
    assert.equal(recordOf(first.msg).seq, 1);
    assert.equal(big.msg, null);
    assert.equal(big.params.seq, "2");
    assert.equal(big.params.hash, (e.source.records[1] as ExportRecord).hash);
    assert.ok(Number(big.params.omitted_bytes) > 2000);
    assert.equal(recordOf(last.msg).seq, 3);
    assert.ok(receiver.sizes.every((size) => size <= 1024));
    assert.equal(e.metrics.truncated.get("syslog"), 1);
  });
});
