export { loadConfig } from "./load.ts";
export { parseDuration, formatDuration } from "./duration.ts";
export {
  DEFAULT_LIMITS,
  DEFAULT_LISTEN,
  DEFAULT_LOG_LEVEL,
  DEFAULT_ROOT,
  DEFAULT_STORAGE_PATH,
  isLoopbackHost,
} from "./build.ts";
export {
  EXPORTER_DEFAULTS,
  type ExporterConfig,
  type FileExporterConfig,
  type HttpExporterConfig,
  type SyslogExporterConfig,
} from "./exporters.ts";
export {
  LOG_LEVELS,
  type ArborConfig,
  type ConfigFlags,
  type LoadConfigOptions,
  type LogLevel,
} from "./types.ts";
