import { performance } from "node:perf_hooks";

import { ArborError } from "../../errors/index.ts";
import {
  DeliveryError,
  type CursorStore,
  type ExportFailureReason,
  type ExportLogger,
  type ExportMetrics,
  type ExportRecord,
  type ExportSource,
  type Sink,
} from "./types.ts";

export interface ExportRunnerOptions {
  source: ExportSource;
  cursors: CursorStore;
  sinks: readonly Sink[];
  logger: ExportLogger;
  metrics?: ExportMetrics;
  /** Maximum records per read and per delivery; default 500. */
  batchSize?: number;
  /** How often an idle exporter reads the log when no `wake()` arrives, in ms; default 1000. */
  pollIntervalMs?: number;
  /** Retry delay after the first failure, in ms; default 100. It doubles with each failure. */
  minBackoffMs?: number;
  /** Maximum retry delay, in ms; default 30000. */
  maxBackoffMs?: number;
  /** How long `stop()` waits for batches in flight before closing the sinks under them, in ms; default 10000. */
  stopGraceMs?: number;
  /** Source of the retry jitter, in [0, 1); default Math.random. */
  random?: () => number;
  /** Monotonic clock in ms for log throttling and outage durations; default performance.now. */
  now?: () => number;
}

export const DEFAULT_BATCH_SIZE = 500;
export const DEFAULT_POLL_INTERVAL_MS = 1000;
export const DEFAULT_MIN_BACKOFF_MS = 100;
export const DEFAULT_MAX_BACKOFF_MS = 30_000;
export const DEFAULT_STOP_GRACE_MS = 10_000;

/** While an exporter keeps failing, one log line per this many ms (and one per change of reason). */
const FAILURE_LOG_INTERVAL_MS = 60_000;

/**
 * Returns the delay before retry number `attempt` (1 for the first retry): exponential from
 * `minMs`, capped at `maxMs`, with the upper half of each step random ("equal jitter") so
 * exporters that failed together do not retry together. Never below `minMs`.
 */
export function retryDelay(
  attempt: number,
  minMs: number,
  maxMs: number,
  random: () => number,
): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(Math.max(attempt - 1, 0), 40));
  return Math.max(minMs, Math.floor(ceiling / 2 + (random() * ceiling) / 2));
}

/**
 * Copies the audit log to every sink, each in its own loop: read from the exporter's cursor,
 * deliver the batch, then store the cursor. The cursor moves only after the sink resolved, so a
 * crash between delivery and the cursor save sends that batch again. Delivery is therefore at
 * least once, and receivers deduplicate by `seq`. A failed delivery is retried with the same batch after a
 * jittered, capped backoff, and one exporter's outage never holds back another.
 *
 * Nothing here runs on the audit writer's path: `wake()` only sets a flag and resolves a timer,
 * and every failure stays inside the exporter's loop.
 */
export class ExportRunner {
  readonly #loops: ExportLoop[];
  readonly #sinks: readonly Sink[];
  readonly #logger: ExportLogger;
  readonly #stopGraceMs: number;
  #running: Promise<void>[] | null = null;
  #stopping: Promise<void> | null = null;

  constructor(options: ExportRunnerOptions) {
    const names = new Set<string>();
    for (const sink of options.sinks) {
      if (names.has(sink.name)) {
        throw new ArborError(
          "INVALID_ARGUMENT",
          `two exporters are named ${JSON.stringify(sink.name)}: each exporter needs its own name, which keys its cursor`,
          { parameter: "name", value: sink.name },
        );
      }
      names.add(sink.name);
    }
    const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
      throw new ArborError(
        "INVALID_ARGUMENT",
        `invalid batchSize ${batchSize}: must be a whole number of at least 1`,
        { parameter: "batchSize", value: batchSize },
      );
    }

    const settings: LoopSettings = {
      source: options.source,
      cursors: options.cursors,
      logger: options.logger,
      metrics: options.metrics ?? null,
      batchSize,
      pollIntervalMs: options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS,
      minBackoffMs: options.minBackoffMs ?? DEFAULT_MIN_BACKOFF_MS,
      maxBackoffMs: options.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS,
      random: options.random ?? Math.random,
      now: options.now ?? (() => performance.now()),
    };
    this.#sinks = options.sinks;
    this.#logger = options.logger;
    this.#stopGraceMs = options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
    this.#loops = options.sinks.map((sink) => new ExportLoop(sink, settings));
  }

  /** Names of the configured exporters, in configuration order. */
  get exporters(): string[] {
    return this.#sinks.map((sink) => sink.name);
  }

  /** Starts one loop per sink. Calling it again, or after `stop()`, does nothing. */
  start(): void {
    if (this.#running !== null || this.#stopping !== null) return;

    this.#running = this.#loops.map((loop) =>
      loop.run().catch((error: unknown) => {
        // run() handles its own failures; reaching this is a bug, and the exporter stays stopped.
        this.#logger.error(
          { exporter: loop.name, err: error },
          "audit exporter stopped unexpectedly",
        );
      }),
    );
  }

  /**
   * Tells idle exporters that new records were committed, so export is near real time. Safe to
   * call from the audit writer after every commit: it does no I/O and never throws.
   */
  wake(): void {
    for (const loop of this.#loops) loop.wake();
  }

  /**
   * Stops every loop after its batch in flight, stores the cursors reached, and closes the sinks.
   * A batch still in flight after `stopGraceMs` is abandoned by closing its sink. Its cursor is not
   * moved, so the next start sends it again.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    for (const loop of this.#loops) loop.stop();
    const running = Promise.all(this.#running ?? []);

    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.#stopGraceMs);
    });
    const result = await Promise.race([running.then(() => "done" as const), graceOver]);
    clearTimeout(timer);

    if (result === "timeout") {
      this.#logger.warn(
        { exporters: this.#loops.filter((loop) => loop.busy).map((loop) => loop.name) },
        `audit exporters still delivering after ${this.#stopGraceMs} ms; closing them, and their batches are sent again on the next start`,
      );
    }
    await Promise.all(this.#sinks.map((sink) => this.#close(sink)));
    await running;
  }

  async #close(sink: Sink): Promise<void> {
    try {
      await sink.close();
    } catch (error) {
      this.#logger.warn({ exporter: sink.name, err: error }, "closing an audit exporter failed");
    }
  }
}

interface LoopSettings {
  source: ExportSource;
  cursors: CursorStore;
  logger: ExportLogger;
  metrics: ExportMetrics | null;
  batchSize: number;
  pollIntervalMs: number;
  minBackoffMs: number;
  maxBackoffMs: number;
  random: () => number;
  now: () => number;
}

type StepResult = { kind: "idle" } | { kind: "progress" } | { kind: "failed"; delayMs: number };

interface Pause {
  resolve: () => void;
  wakeable: boolean;
}

/** The loop of one exporter. */
class ExportLoop {
  readonly #sink: Sink;
  readonly #settings: LoopSettings;
  /** Last seq the target acknowledged. */
  #cursor = 0;
  /** Last seq stored in the cursor store; behind `#cursor` only after a failed save. */
  #savedCursor = 0;
  /** A batch read but not yet acknowledged; retried as it is after a failed delivery. */
  #batch: ExportRecord[] | null = null;
  #wakeRequested = false;
  #stopping = false;
  #pause: Pause | null = null;
  #delivering = false;
  #failure: { count: number; since: number; loggedAt: number; reason: ExportFailureReason } | null =
    null;

  constructor(sink: Sink, settings: LoopSettings) {
    this.#sink = sink;
    this.#settings = settings;
  }

  get name(): string {
    return this.#sink.name;
  }

  get busy(): boolean {
    return this.#delivering;
  }

  wake(): void {
    this.#wakeRequested = true;
    if (this.#pause?.wakeable === true) this.#pause.resolve();
  }

  stop(): void {
    this.#stopping = true;
    this.#pause?.resolve();
  }

  async run(): Promise<void> {
    if (!(await this.#loadCursor())) return;

    while (!this.#stopping) {
      const result = await this.#step();
      if (this.#stopping) break;
      if (result.kind === "failed") {
        await this.#sleep(result.delayMs, false);
      } else if (result.kind === "idle" && !this.#wakeRequested) {
        await this.#sleep(this.#settings.pollIntervalMs, true);
      }
    }

    if (this.#savedCursor < this.#cursor) await this.#saveCursor();
  }

  /** Reads the stored cursor, retrying until it succeeds; false when stopped first. */
  async #loadCursor(): Promise<boolean> {
    while (!this.#stopping) {
      try {
        this.#cursor = await this.#settings.cursors.get(this.name);
        this.#savedCursor = this.#cursor;
        return true;
      } catch (error) {
        await this.#sleep(this.#fail("cursor", error), false);
      }
    }
    return false;
  }

  async #step(): Promise<StepResult> {
    if (this.#savedCursor < this.#cursor && !(await this.#saveCursor())) {
      return { kind: "failed", delayMs: this.#retryDelay(null) };
    }

    if (this.#batch === null) {
      this.#wakeRequested = false;
      let batch: ExportRecord[];
      try {
        batch = await this.#settings.source.read(this.#cursor, this.#settings.batchSize);
        this.#checkOrder(batch);
      } catch (error) {
        return { kind: "failed", delayMs: this.#fail("read", error) };
      }
      if (batch.length === 0) {
        this.#recovered();
        this.#setLag(0);
        return { kind: "idle" };
      }
      this.#batch = batch;
    }

    const batch = this.#batch;
    this.#delivering = true;
    try {
      await this.#sink.deliver(batch);
    } catch (error) {
      const reason = error instanceof DeliveryError ? error.reason : "unavailable";
      const retryAfter = error instanceof DeliveryError ? error.retryAfterMs : null;
      return { kind: "failed", delayMs: this.#fail(reason, error, retryAfter) };
    } finally {
      this.#delivering = false;
    }

    this.#batch = null;
    this.#cursor = batch[batch.length - 1]!.seq;
    this.#metric((m) => m.addDelivered(this.name, batch.length));
    if (!(await this.#saveCursor())) return { kind: "failed", delayMs: this.#retryDelay(null) };

    this.#recovered();
    await this.#reportLag();
    return { kind: "progress" };
  }

  /** Stores the cursor; on failure counts and logs it, and the next step tries again. */
  async #saveCursor(): Promise<boolean> {
    const seq = this.#cursor;
    try {
      await this.#settings.cursors.set(this.name, seq);
      this.#savedCursor = seq;
      return true;
    } catch (error) {
      this.#fail("cursor", error);
      return false;
    }
  }

  /**
   * Rejects a batch out of order or at or below the cursor, because delivering it would break
   * the receivers' ordering. Gaps are delivered but logged and counted: the records between were
   * most likely pruned by retention before this exporter reached them.
   */
  #checkOrder(batch: ExportRecord[]): void {
    let expected = this.#cursor + 1;
    for (const record of batch) {
      if (!Number.isSafeInteger(record.seq) || record.seq < expected) {
        throw new Error(
          `the audit log returned seq ${record.seq} where seq ${expected} or higher was expected`,
        );
      }
      if (record.seq > expected) {
        const missing = record.seq - expected;
        this.#settings.logger.error(
          { exporter: this.name, fromSeq: expected, toSeq: record.seq - 1 },
          `audit records ${expected} to ${record.seq - 1} are missing from the log and were not exported; retention may have pruned them before this exporter reached them`,
        );
        this.#metric((m) => m.addSkipped(this.name, missing));
      }
      expected = record.seq + 1;
    }
  }

  /** Counts and logs a failure, and returns the delay before the next attempt. */
  #fail(reason: ExportFailureReason, error: unknown, retryAfterMs: number | null = null): number {
    const now = this.#settings.now();
    const failure = this.#failure ?? { count: 0, since: now, loggedAt: -Infinity, reason };
    failure.count += 1;
    this.#failure = failure;
    this.#metric((m) => m.addFailure(this.name, reason));
    const delayMs = this.#retryDelay(retryAfterMs);

    if (
      failure.count === 1 ||
      failure.reason !== reason ||
      now - failure.loggedAt >= FAILURE_LOG_INTERVAL_MS
    ) {
      failure.loggedAt = now;
      failure.reason = reason;
      const details = {
        exporter: this.name,
        reason,
        attempts: failure.count,
        retryInMs: delayMs,
        cursor: this.#cursor,
        err: error,
      };
      const message = `audit export failed (${describeFailure(reason)}); retrying`;
      if (reason === "rejected") this.#settings.logger.error(details, message);
      else this.#settings.logger.warn(details, message);
    }
    void this.#reportLag();
    return delayMs;
  }

  #retryDelay(retryAfterMs: number | null): number {
    const { minBackoffMs, maxBackoffMs, random } = this.#settings;
    const delay = retryDelay(this.#failure?.count ?? 1, minBackoffMs, maxBackoffMs, random);
    if (retryAfterMs === null) return delay;
    return Math.min(maxBackoffMs, Math.max(delay, retryAfterMs));
  }

  #recovered(): void {
    const failure = this.#failure;
    if (failure === null) return;
    this.#failure = null;
    this.#settings.logger.info(
      {
        exporter: this.name,
        failedAttempts: failure.count,
        outageMs: Math.round(this.#settings.now() - failure.since),
        cursor: this.#cursor,
      },
      "audit export recovered",
    );
  }

  async #reportLag(): Promise<void> {
    const { metrics, source } = this.#settings;
    if (metrics === null || source.latestSeq === undefined) return;
    try {
      const latest = await source.latestSeq();
      this.#setLag(Math.max(0, latest - this.#cursor));
    } catch {
      // The next step's read reports the log's failure; lag stays at its last value until then.
    }
  }

  #setLag(records: number): void {
    this.#metric((m) => m.setLag(this.name, records));
  }

  #metric(update: (metrics: ExportMetrics) => void): void {
    const metrics = this.#settings.metrics;
    if (metrics === null) return;
    try {
      update(metrics);
    } catch {
      // A broken metrics adapter must not stop the export.
    }
  }

  /** Waits `ms`, or less when stopped or, if `wakeable`, when woken. */
  #sleep(ms: number, wakeable: boolean): Promise<void> {
    if (this.#stopping) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#pause = null;
        resolve();
      };
      // Unreferenced: an idle or retrying exporter alone does not keep the process running.
      const timer = setTimeout(done, ms).unref();
      this.#pause = { resolve: done, wakeable };
    });
  }
}

function describeFailure(reason: ExportFailureReason): string {
  switch (reason) {
    case "unavailable":
      return "the target is unavailable";
    case "rejected":
      return "the target rejected the batch";
    case "read":
      return "reading the audit log failed";
    case "cursor":
      return "reading or storing the export cursor failed";
  }
}
