import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import {
  DeliveryError,
  ExportRunner,
  retryDelay,
  type ExportRecord,
  type ExportRunnerOptions,
  type ExportSource,
} from "../../../src/audit/exporters/index.ts";
import { isArborError } from "../../../src/errors/index.ts";
import {
  FAST,
  MemoryCursorStore,
  MemorySink,
  MemorySource,
  RecordingLogger,
  RecordingMetrics,
  deduplicate,
  makeRecord,
  range,
  waitFor,
} from "./helpers.ts";

/** Runners a test started; stopped after each test, so a failed test leaves no loop behind. */
const started: ExportRunner[] = [];
afterEach(() => Promise.all(started.splice(0).map((runner) => runner.stop())));

function track(runner: ExportRunner): ExportRunner {
  started.push(runner);
  return runner;
}

interface Harness {
  source: MemorySource;
  cursors: MemoryCursorStore;
  sink: MemorySink;
  metrics: RecordingMetrics;
  logger: RecordingLogger;
  runner: ExportRunner;
}

function harness(options: Partial<ExportRunnerOptions> = {}): Harness {
  const source = new MemorySource();
  const cursors = new MemoryCursorStore();
  const sink = new MemorySink();
  const metrics = new RecordingMetrics();
  const logger = new RecordingLogger();
  const runner = track(
    new ExportRunner({ ...FAST, source, cursors, sinks: [sink], metrics, logger, ...options }),
  );
  return { source, cursors, sink, metrics, logger, runner };
}

void describe("ExportRunner", () => {
  void test("runner delivers records in order", async () => {
    const h = harness({ batchSize: 500 });
    h.source.append(1200);
    h.runner.start();

    await waitFor(() => h.cursors.peek("memory") === 1200, "cursor at 1200");
    await h.runner.stop();

    assert.deepEqual(h.sink.seqs, range(1, 1200));
    assert.deepEqual(
      h.sink.batches.map((b) => b.length),
      [500, 500, 200],
    );
    assert.equal(h.metrics.delivered.get("memory"), 1200);
    assert.equal(h.metrics.lag.get("memory"), 0);
    assert.ok(h.sink.closed, "stop closes the sink");
  });

  void test("export cursor moves only after acknowledgement", async () => {
    const h = harness();
    h.source.append(5);
    h.sink.hold();
    h.runner.start();

    await waitFor(() => h.sink.attempts.length === 1, "a delivery in flight");
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.equal(h.cursors.peek("memory"), 0, "cursor unchanged while the target has not answered");
    assert.deepEqual(h.cursors.saves, []);

    h.sink.failNext.push(new DeliveryError("unavailable", "receiver down"));
    h.sink.release();
    await waitFor(() => h.metrics.failureCount("memory") === 1, "the failure counted");
    assert.equal(h.cursors.peek("memory"), 0, "cursor unchanged after a failed delivery");

    await waitFor(() => h.cursors.peek("memory") === 5, "cursor at 5 after the retry");
    assert.deepEqual(h.cursors.saves, [{ exporter: "memory", seq: 5 }]);
    assert.deepEqual(h.sink.seqs, range(1, 5));
    await h.runner.stop();
  });

  void test("failed delivery retries the same batch", async () => {
    const h = harness();
    h.source.append(3);
    h.sink.failNext.push(
      new DeliveryError("unavailable", "refused"),
      new DeliveryError("unavailable", "refused"),
      new Error("a sink bug"),
    );
    h.runner.start();

    await waitFor(() => h.cursors.peek("memory") === 3, "delivery after three failures");
    await h.runner.stop();

    assert.equal(h.sink.attempts.length, 4);
    for (const attempt of h.sink.attempts) {
      assert.deepEqual(
        attempt.map((r) => r.seq),
        [1, 2, 3],
      );
    }
    assert.equal(h.metrics.failureCount("memory", "unavailable"), 3);
    const warnings = h.logger.at("warn");
    assert.equal(warnings.length, 1, "repeated failures of one reason log once");
    assert.equal(warnings[0]!.details.exporter, "memory");
    const recovered = h.logger.entries.find((e) => e.message === "audit export recovered");
    assert.equal(recovered?.details.failedAttempts, 3);
  });

  void test("rejected delivery is counted and logged as error", async () => {
    const h = harness();
    h.source.append(2);
    h.sink.failNext.push(new DeliveryError("rejected", "answered 401"));
    h.runner.start();

    await waitFor(() => h.cursors.peek("memory") === 2, "delivery after the rejection");
    await h.runner.stop();

    assert.equal(h.metrics.failureCount("memory", "rejected"), 1);
    assert.equal(h.logger.at("error").length, 1);
    assert.match(h.logger.at("error")[0]!.message, /rejected/);
  });

  void test("runner restarted from the stored cursor resumes without loss", async () => {
    const first = harness();
    first.source.append(50);
    first.runner.start();
    await waitFor(() => first.cursors.peek("memory") === 50, "first run at 50");
    await first.runner.stop();
    first.source.append(30);

    const sink = new MemorySink();
    const second = track(
      new ExportRunner({
        ...FAST,
        source: first.source,
        cursors: first.cursors,
        sinks: [sink],
        logger: first.logger,
      }),
    );
    second.start();
    await waitFor(() => first.cursors.peek("memory") === 80, "second run at 80");
    await second.stop();

    assert.deepEqual(first.sink.seqs, range(1, 50));
    assert.deepEqual(sink.seqs, range(51, 80));
  });

  void test("crash before the cursor save sends the batch again", async () => {
    const first = harness();
    first.source.append(10);
    first.cursors.failSaves = true;
    first.runner.start();
    await waitFor(() => first.sink.seqs.length === 10, "first delivery");
    await waitFor(() => first.metrics.failureCount("memory", "cursor") >= 1, "failed save");
    await first.runner.stop();
    assert.equal(first.cursors.peek("memory"), 0);

    first.cursors.failSaves = false;
    const sink = new MemorySink();
    const second = track(
      new ExportRunner({
        ...FAST,
        source: first.source,
        cursors: first.cursors,
        sinks: [sink],
        logger: first.logger,
      }),
    );
    second.start();
    await waitFor(() => first.cursors.peek("memory") === 10, "second run at 10");
    await second.stop();

    assert.deepEqual(sink.seqs, range(1, 10), "the unacknowledged batch is sent again");
    assert.deepEqual(deduplicate([...first.sink.seqs, ...sink.seqs]), range(1, 10));
  });

  void test("failed cursor save is retried without sending again", async () => {
    const h = harness();
    h.source.append(4);
    h.cursors.failSaves = true;
    h.runner.start();
    await waitFor(() => h.metrics.failureCount("memory", "cursor") >= 2, "two failed saves");
    h.cursors.failSaves = false;
    await waitFor(() => h.cursors.peek("memory") === 4, "cursor saved");
    await h.runner.stop();

    assert.deepEqual(h.sink.seqs, range(1, 4));
    assert.equal(h.sink.attempts.length, 1);
  });

  void test("wake delivers without waiting for the poll", async () => {
    const h = harness({ pollIntervalMs: 60_000 });
    h.runner.start();
    await waitFor(() => h.source.reads >= 1, "first read");
    await new Promise((resolve) => setTimeout(resolve, 20));

    h.source.append(3);
    const woken = Date.now();
    h.runner.wake();
    await waitFor(() => h.cursors.peek("memory") === 3, "delivery after wake", 2000);
    assert.ok(Date.now() - woken < 1000, "delivered long before the 60 s poll");
    await h.runner.stop();
  });

  void test("poll finds records without wake", async () => {
    const h = harness({ pollIntervalMs: 20 });
    h.runner.start();
    await waitFor(() => h.source.reads >= 1, "first read");
    h.source.append(2);

    await waitFor(() => h.cursors.peek("memory") === 2, "delivery by polling");
    await h.runner.stop();
  });

  void test("exporter never blocks the audit writer", async () => {
    const stuck = new MemorySink("stuck");
    stuck.hold();
    const healthy = new MemorySink("healthy");
    const source = new MemorySource();
    const cursors = new MemoryCursorStore();
    const throwingMetrics = new RecordingMetrics();
    throwingMetrics.addDelivered = () => {
      throw new Error("metrics adapter bug");
    };
    const runner = track(
      new ExportRunner({
        ...FAST,
        source,
        cursors,
        sinks: [stuck, healthy],
        metrics: throwingMetrics,
        logger: new RecordingLogger(),
        stopGraceMs: 50,
      }),
    );
    runner.start();

    for (let i = 0; i < 100; i++) {
      source.append(1);
      const before = performance.now();
      assert.doesNotThrow(() => runner.wake());
      assert.ok(performance.now() - before < 50, "wake returns at once");
    }

    await waitFor(() => cursors.peek("healthy") === 100, "healthy exporter at 100");
    assert.equal(cursors.peek("stuck"), 0, "the stuck exporter holds nothing back");
    assert.equal(stuck.attempts.length, 1);

    await runner.stop();
    assert.ok(stuck.closed, "stop closes a sink still delivering after the grace period");
    assert.equal(cursors.peek("stuck"), 0, "an abandoned batch does not move the cursor");
  });

  void test("stop waits for the batch in flight", async () => {
    const h = harness();
    h.source.append(7);
    h.sink.hold();
    h.runner.start();
    await waitFor(() => h.sink.attempts.length === 1, "a delivery in flight");

    let stopped = false;
    const stopping = h.runner.stop().then(() => (stopped = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(stopped, false, "stop waits while the batch is in flight");
    assert.equal(h.sink.closed, false, "the sink stays open until its batch finished");

    h.sink.release();
    await stopping;
    assert.equal(h.cursors.peek("memory"), 7, "the finished batch's cursor is stored");
    assert.ok(h.sink.closed);
  });

  void test("read failure is retried", async () => {
    const h = harness();
    h.source.append(3);
    h.source.failReads = 2;
    h.runner.start();

    await waitFor(() => h.cursors.peek("memory") === 3, "delivery after failed reads");
    await h.runner.stop();
    assert.equal(h.metrics.failureCount("memory", "read"), 2);
    assert.deepEqual(h.sink.seqs, [1, 2, 3]);
  });

  void test("gap in the log is logged and counted", async () => {
    const records = [1, 2, 5, 6].map((seq) => makeRecord(seq));
    const source: ExportSource = {
      read: (after, limit) => Promise.resolve(records.filter((r) => r.seq > after).slice(0, limit)),
    };
    const h = harness({ source });
    h.runner.start();

    await waitFor(() => h.cursors.peek("memory") === 6, "cursor at 6");
    await h.runner.stop();
    assert.deepEqual(h.sink.seqs, [1, 2, 5, 6]);
    assert.equal(h.metrics.skipped.get("memory"), 2);
    const gap = h.logger.at("error")[0];
    assert.equal(gap?.details.fromSeq, 3);
    assert.equal(gap?.details.toSeq, 4);
  });

  void test("out of order batch is not delivered", async () => {
    const reordered: ExportRecord[] = [makeRecord(2), makeRecord(1)];
    const source: ExportSource = { read: () => Promise.resolve(reordered) };
    const h = harness({ source });
    h.runner.start();

    await waitFor(() => h.metrics.failureCount("memory", "read") >= 2, "two rejected reads");
    await h.runner.stop();
    assert.equal(h.sink.attempts.length, 0);
    assert.equal(h.cursors.peek("memory"), 0);
  });

  void test("failing exporter does not hold back another", async () => {
    const down = new MemorySink("down");
    down.failNext = Array.from({ length: 1000 }, () => new DeliveryError("unavailable", "down"));
    const up = new MemorySink("up");
    const source = new MemorySource();
    const cursors = new MemoryCursorStore();
    const runner = track(
      new ExportRunner({
        ...FAST,
        source,
        cursors,
        sinks: [down, up],
        logger: new RecordingLogger(),
      }),
    );
    source.append(20);
    runner.start();

    await waitFor(() => cursors.peek("up") === 20, "healthy exporter at 20");
    await runner.stop();
    assert.equal(cursors.peek("down"), 0);
  });

  void test("lag counts records not yet acknowledged", async () => {
    const h = harness({ batchSize: 10 });
    h.source.append(25);
    h.sink.failNext = Array.from({ length: 3 }, () => new DeliveryError("unavailable", "down"));
    h.runner.start();

    await waitFor(() => h.metrics.failureCount("memory") === 3, "three failures");
    await waitFor(() => h.metrics.lag.get("memory") === 25, "lag 25 while down");
    await waitFor(() => h.cursors.peek("memory") === 25, "caught up");
    await waitFor(() => h.metrics.lag.get("memory") === 0, "lag 0 after catching up");
    await h.runner.stop();
  });

  void test("duplicate exporter names are rejected", () => {
    assert.throws(
      () =>
        new ExportRunner({
          source: new MemorySource(),
          cursors: new MemoryCursorStore(),
          sinks: [new MemorySink("siem"), new MemorySink("siem")],
          logger: new RecordingLogger(),
        }),
      (error: unknown) => isArborError(error, "INVALID_ARGUMENT") && /"siem"/.test(error.message),
    );
  });
});

void describe("retryDelay", () => {
  void test("retry delay doubles from the minimum", () => {
    const low = () => 0;
    assert.deepEqual(
      [1, 2, 3, 4].map((attempt) => retryDelay(attempt, 100, 30_000, low)),
      [100, 100, 200, 400],
    );
    const high = () => 0.999_999;
    assert.deepEqual(
      [1, 2, 3, 4].map((attempt) => retryDelay(attempt, 100, 30_000, high)),
      [100, 199, 399, 799],
    );
  });

  void test("retry delay is capped", () => {
    for (const attempt of [10, 20, 100, 10_000]) {
      const delay = retryDelay(attempt, 100, 30_000, Math.random);
      assert.ok(delay >= 15_000, `attempt ${attempt} waits ${delay} ms`);
      assert.ok(delay <= 30_000, `attempt ${attempt} waits ${delay} ms`);
    }
  });

  void test("retry delay is jittered", () => {
    const delays = new Set(range(1, 50).map(() => retryDelay(8, 100, 30_000, Math.random)));
    assert.ok(delays.size > 10, `only ${delays.size} distinct delays`);
  });
});
