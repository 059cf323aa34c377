import { readFile } from "node:fs/promises";

import type {
  ExporterConfig,
  HttpExporterConfig,
  SyslogExporterConfig,
} from "../../config/exporters.ts";
import { ArborError } from "../../errors/index.ts";
import { FileSink } from "./file.ts";
import { HttpSink } from "./http.ts";
import { ExportRunner, type ExportRunnerOptions } from "./runner.ts";
import { createSyslogSink } from "./syslog.ts";
import type { CursorStore, ExportLogger, ExportMetrics, ExportSource, Sink } from "./types.ts";

export interface ExporterDeps {
  source: ExportSource;
  cursors: CursorStore;
  logger: ExportLogger;
  metrics?: ExportMetrics;
  /** Batch size, poll interval, backoff and stop grace for the runner; defaults otherwise. */
  tuning?: Omit<ExportRunnerOptions, "source" | "cursors" | "sinks" | "logger" | "metrics">;
  /** HOSTNAME of syslog messages; default os.hostname(). */
  hostname?: string;
}

/**
 * Builds one sink per configured exporter and a runner over them, not yet started. Reads each
 * TLS CA file and checks each bearer token file now, so a wrong path fails at start (as
 * INVALID_ARGUMENT naming the key) rather than at the first delivery. The caller starts the
 * runner, calls `wake()` after each audit commit, and calls `stop()` on shutdown.
 */
export async function createExporters(
  config: { audit: { exporters: readonly ExporterConfig[] } },
  deps: ExporterDeps,
): Promise<ExportRunner> {
  const sinks: Sink[] = [];
  for (const [index, exporter] of config.audit.exporters.entries()) {
    sinks.push(await createSink(exporter, index, deps));
  }
  return new ExportRunner({
    ...deps.tuning,
    source: deps.source,
    cursors: deps.cursors,
    logger: deps.logger,
    metrics: deps.metrics,
    sinks,
  });
}

async function createSink(
  exporter: ExporterConfig,
  index: number,
  deps: ExporterDeps,
): Promise<Sink> {
  switch (exporter.type) {
    case "file":
      return new FileSink(exporter);
    case "syslog":
      return createSyslog(exporter, index, deps);
    case "http":
      return createHttp(exporter, index);
  }
}

async function createSyslog(
  exporter: SyslogExporterConfig,
  index: number,
  deps: ExporterDeps,
): Promise<Sink> {
  const ca =
    exporter.caFile === null
      ? null
      : await readConfiguredFile(exporter.caFile, `audit.exporters[${index}].ca_file`);
  return createSyslogSink({
    name: exporter.name,
    transport: exporter.transport,
    host: exporter.host,
    port: exporter.port,
    facility: exporter.facility,
    maxMessageBytes: exporter.maxMessageBytes,
    timeoutMs: exporter.timeoutMs,
    ca,
    structuredDataId: exporter.sdId,
    hostname: deps.hostname,
    onBodyOmitted: (records) => {
      try {
        deps.metrics?.addTruncated(exporter.name, records);
      } catch {
        // A broken metrics adapter must not fail the delivery.
      }
    },
  });
}

async function createHttp(exporter: HttpExporterConfig, index: number): Promise<Sink> {
  if (exporter.bearerTokenFile !== null) {
    const key = `audit.exporters[${index}].bearer_token_file`;
    const token = await readConfiguredFile(exporter.bearerTokenFile, key);
    if (token.trim() === "") {
      throw new ArborError(
        "INVALID_ARGUMENT",
        `invalid ${key}: the file ${exporter.bearerTokenFile} is empty; write the token into it`,
        { parameter: key, value: exporter.bearerTokenFile },
      );
    }
  }
  return new HttpSink(exporter);
}

/** Reads a file named by the configuration; the error names the key and the path, never the content. */
async function readConfiguredFile(path: string, key: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "read error";
    throw new ArborError(
      "INVALID_ARGUMENT",
      `failed to read ${key} ${path} (${code}): check the path and its permissions`,
      { parameter: key, value: path },
      { cause: error },
    );
  }
}
