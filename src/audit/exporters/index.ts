export { createExporters, type ExporterDeps } from "./create.ts";
export { FileSink, type FileSinkOptions } from "./file.ts";
export { encodeBatch, HttpSink, type HttpSinkOptions } from "./http.ts";
export { ExportRunner, retryDelay, type ExportRunnerOptions } from "./runner.ts";
export { createSyslogSink, type SyslogSinkOptions, type SyslogTransport } from "./syslog.ts";
export { formatSyslogMessage, SYSLOG_FACILITIES, type SyslogFacility } from "./syslog-format.ts";
export {
  DeliveryError,
  type CursorStore,
  type DeliveryFailure,
  type ExportFailureReason,
  type ExportLogger,
  type ExportMetrics,
  type ExportRecord,
  type ExportSource,
  type Sink,
} from "./types.ts";
