/**
 * Contracts between the audit log and its exporters. The runner reads records from an
 * `ExportSource` in sequence order, hands each batch to a `Sink` and stores how far each exporter
 * got in a `CursorStore`, so an exporter resumes after an outage or a restart without losing a
 * record. Delivery is at least once: receivers deduplicate by `seq`.
 */

/** One audit record as stored in the chained log. */
export interface ExportRecord {
  /** Gapless sequence number, starting at 1. */
  seq: number;
  /** The chain hash over `json`, as stored. */
  hash: string;
  /** The record's RFC 8785 canonical JSON, exactly as stored. */
  json: string;
  /** Event type, such as `token.issued` or `audit.checkpoint`. */
  type: string;
  /** Event time in integer milliseconds since the Unix epoch. */
  at: number;
}

export interface ExportSource {
  /** Returns records with seq > afterSeq in seq order, at most limit. */
  read(afterSeq: number, limit: number): Promise<ExportRecord[]>;
  /**
   * Returns the highest stored seq, 0 when the log is empty. Optional: without it the runner
   * reports lag only when an exporter has caught up (lag 0).
   */
  latestSeq?(): Promise<number>;
}

export interface CursorStore {
  /** Returns the last seq the exporter's target acknowledged, 0 for an exporter never run. */
  get(exporter: string): Promise<number>;
  /** Persists durably; only ever moves forward. */
  set(exporter: string, seq: number): Promise<void>;
}

export interface Sink {
  /** The exporter's name from the configuration; it keys the cursor, logs and metrics. */
  readonly name: string;
  /**
   * Delivers in order; resolves only once the target acknowledged (file: written and fsynced;
   * TCP syslog: written and drained; UDP: sent; HTTP: 2xx). Rejects with a `DeliveryError` when
   * the target did not take the batch, and the runner retries the same batch.
   */
  deliver(batch: ExportRecord[]): Promise<void>;
  /** Releases connections and files; a delivery in flight rejects. */
  close(): Promise<void>;
}

/**
 * Reason for a failed delivery. `unavailable`: the target was unreachable, timed out or responded with a
 * temporary error. `rejected`: the target rejected the batch (an HTTP 4xx other than 408 and 429).
 * That usually needs an operator, but the batch is still retried so nothing is skipped.
 */
export type DeliveryFailure = "unavailable" | "rejected";

/** A failed delivery, raised by sinks. */
export class DeliveryError extends Error {
  override readonly name = "DeliveryError";
  readonly reason: DeliveryFailure;
  /** Delay the target asked for (HTTP Retry-After), in milliseconds. */
  readonly retryAfterMs: number | null;

  constructor(
    reason: DeliveryFailure,
    message: string,
    options: { cause?: unknown; retryAfterMs?: number | null } = {},
  ) {
    super(message, { cause: options.cause });
    this.reason = reason;
    this.retryAfterMs = options.retryAfterMs ?? null;
  }
}

/**
 * Failure reasons counted per exporter: the two delivery failures, a failed read of the log
 * (`read`), a failed cursor read or save (`cursor`).
 */
export type ExportFailureReason = DeliveryFailure | "read" | "cursor";

/**
 * Receiver of export metrics. The runner calls these from its loops, never from the audit
 * writer's path; an exception thrown here is caught and ignored. Suggested Prometheus names:
 * `arbor_audit_export_lag_records` (gauge), `arbor_audit_exported_records_total`,
 * `arbor_audit_export_failures_total` (label `reason`), `arbor_audit_export_truncated_total` and
 * `arbor_audit_export_skipped_total`, each labelled by `exporter`.
 */
export interface ExportMetrics {
  /** Sets how many stored records the exporter's target has not acknowledged yet. */
  setLag(exporter: string, records: number): void;
  addDelivered(exporter: string, records: number): void;
  addFailure(exporter: string, reason: ExportFailureReason): void;
  /** Counts records sent without their JSON body because they did not fit (syslog over UDP). */
  addTruncated(exporter: string, records: number): void;
  /** Counts seqs missing from the source between the cursor and the next record read. */
  addSkipped(exporter: string, records: number): void;
}

/** The logging calls exporters make; a pino logger fits. */
export interface ExportLogger {
  info(details: Record<string, unknown>, message: string): void;
  warn(details: Record<string, unknown>, message: string): void;
  error(details: Record<string, unknown>, message: string): void;
}
