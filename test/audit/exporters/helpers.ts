import { createHash } from "node:crypto";

import canonicalize from "canonicalize";

import type {
  CursorStore,
  ExportFailureReason,
  ExportLogger,
  ExportMetrics,
  ExportRecord,
  ExportSource,
  Sink,
} from "../../../src/audit/exporters/index.ts";

export const START = Date.UTC(2026, 0, 1);

export interface RecordOptions {
  type?: string;
  outcome?: "success" | "failure" | "denied" | null;
  details?: Record<string, unknown>;
}

/** Builds a record the way the chained log stores it: canonical JSON and its SHA-256. */
export function makeRecord(seq: number, options: RecordOptions = {}): ExportRecord {
  const type = options.type ?? "key.created";
  const at = START + seq * 1000;
  const body: Record<string, unknown> = {
    seq,
    type,
    at,
    principal: { type: "operator", id: "opt_test" },
    details: options.details ?? { path: `prod/app-${seq}:encrypt` },
  };
  if (options.outcome !== null) body.outcome = options.outcome ?? "success";
  const json = canonicalize(body)!;
  return { seq, hash: createHash("sha256").update(json).digest("hex"), json, type, at };
}

/** An in-memory audit log; `failReads` makes the next reads throw. */
export class MemorySource implements ExportSource {
  readonly records: ExportRecord[] = [];
  failReads = 0;
  reads = 0;

  append(count: number, options: RecordOptions = {}): ExportRecord[] {
    const added: ExportRecord[] = [];
    for (let i = 0; i < count; i++) added.push(makeRecord(this.latest + 1 + i, options));
    this.records.push(...added);
    return added;
  }

  get latest(): number {
    return this.records.at(-1)?.seq ?? 0;
  }

  read(afterSeq: number, limit: number): Promise<ExportRecord[]> {
    this.reads += 1;
    if (this.failReads > 0) {
      this.failReads -= 1;
      return Promise.reject(new Error("database is locked"));
    }
    return Promise.resolve(this.records.filter((r) => r.seq > afterSeq).slice(0, limit));
  }

  latestSeq(): Promise<number> {
    return Promise.resolve(this.latest);
  }
}

/** An in-memory cursor store that records every save and rejects a cursor moving back. */
export class MemoryCursorStore implements CursorStore {
  readonly #cursors = new Map<string, number>();
  readonly saves: { exporter: string; seq: number }[] = [];
  /** While true, every save fails. */
  failSaves = false;

  get(exporter: string): Promise<number> {
    return Promise.resolve(this.#cursors.get(exporter) ?? 0);
  }

  set(exporter: string, seq: number): Promise<void> {
    if (this.failSaves) return Promise.reject(new Error("disk I/O error"));
    const current = this.#cursors.get(exporter) ?? 0;
    if (seq < current) {
      return Promise.reject(
        new Error(`cursor of ${exporter} moved back from ${current} to ${seq}`),
      );
    }
    this.#cursors.set(exporter, seq);
    this.saves.push({ exporter, seq });
    return Promise.resolve();
  }

  peek(exporter: string): number {
    return this.#cursors.get(exporter) ?? 0;
  }
}

export class RecordingMetrics implements ExportMetrics {
  readonly lag = new Map<string, number>();
  readonly delivered = new Map<string, number>();
  readonly failures: { exporter: string; reason: ExportFailureReason }[] = [];
  readonly truncated = new Map<string, number>();
  readonly skipped = new Map<string, number>();

  setLag(exporter: string, records: number): void {
    this.lag.set(exporter, records);
  }

  addDelivered(exporter: string, records: number): void {
    this.delivered.set(exporter, (this.delivered.get(exporter) ?? 0) + records);
  }

  addFailure(exporter: string, reason: ExportFailureReason): void {
    this.failures.push({ exporter, reason });
  }

  addTruncated(exporter: string, records: number): void {
    this.truncated.set(exporter, (this.truncated.get(exporter) ?? 0) + records);
  }

  addSkipped(exporter: string, records: number): void {
    this.skipped.set(exporter, (this.skipped.get(exporter) ?? 0) + records);
  }

  failureCount(exporter: string, reason?: ExportFailureReason): number {
    return this.failures.filter(
      (f) => f.exporter === exporter && (reason === undefined || f.reason === reason),
    ).length;
  }
}

export interface LogEntry {
  level: "info" | "warn" | "error";
  details: Record<string, unknown>;
  message: string;
}

export class RecordingLogger implements ExportLogger {
  readonly entries: LogEntry[] = [];

  info(details: Record<string, unknown>, message: string): void {
    this.entries.push({ level: "info", details, message });
  }

  warn(details: Record<string, unknown>, message: string): void {
    this.entries.push({ level: "warn", details, message });
  }

  error(details: Record<string, unknown>, message: string): void {
    this.entries.push({ level: "error", details, message });
  }

  at(level: LogEntry["level"]): LogEntry[] {
    return this.entries.filter((entry) => entry.level === level);
  }
}

/**
 * A sink that keeps every delivered batch. `failNext` makes the next deliveries reject with the
 * given error; `hold()` makes deliveries wait until `release()`.
 */
export class MemorySink implements Sink {
  readonly name: string;
  readonly batches: ExportRecord[][] = [];
  readonly attempts: ExportRecord[][] = [];
  failNext: Error[] = [];
  closed = false;
  #gate: { promise: Promise<void>; release: () => void } | null = null;

  constructor(name = "memory") {
    this.name = name;
  }

  get seqs(): number[] {
    return this.batches.flat().map((r) => r.seq);
  }

  hold(): void {
    let release!: () => void;
    const promise = new Promise<void>((resolve) => (release = resolve));
    this.#gate = { promise, release };
  }

  release(): void {
    const gate = this.#gate;
    this.#gate = null;
    gate?.release();
  }

  async deliver(batch: ExportRecord[]): Promise<void> {
    this.attempts.push(batch);
    if (this.#gate !== null) await this.#gate.promise;
    if (this.closed) throw new Error("closed while delivering");
    const failure = this.failNext.shift();
    if (failure !== undefined) throw failure;
    this.batches.push(batch);
  }

  close(): Promise<void> {
    this.closed = true;
    this.release();
    return Promise.resolve();
  }
}

/** Polls `condition` every 5 ms until it holds; fails naming `description` after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean,
  description: string,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Returns seqs in first-seen order without repeats, for receivers that deduplicate by seq. */
export function deduplicate(seqs: readonly number[]): number[] {
  return [...new Set(seqs)];
}

export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** Runner settings that keep tests fast: short backoff and a long poll, so only wake() triggers reads. */
export const FAST = { minBackoffMs: 5, maxBackoffMs: 40, pollIntervalMs: 60_000 } as const;
