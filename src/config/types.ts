import type { StorageConfig } from "../storage/index.ts";

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** A pino log level. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The validated configuration, with every default applied. Durations are in milliseconds. */
export interface ArborConfig {
  /** Base URL clients use to reach Arbor, without a trailing slash. */
  externalAddress: string;
  listen: { host: string; port: number };
  /** Null when the server listens without TLS. */
  tls: { certFile: string; keyFile: string } | null;
  /** Allows listening beyond loopback without TLS, for example behind a TLS-terminating proxy. */
  allowInsecureListen: boolean;
  storage: StorageConfig;
  root: { provider: "sealed"; shares: number; threshold: number };
  /** Exporter entries, kept unvalidated beyond being mappings until the exporters exist. */
  audit: { exporters: Record<string, unknown>[] };
  limits: {
    /** Largest plaintext accepted by the encryption routes, in bytes. */
    maxPayloadBytes: number;
    /** Largest HTTP request body, in bytes. */
    maxBodyBytes: number;
    unsealAttemptsPerMinute: number;
    /** Entries in the in-memory cache of unwrapped keys. */
    cacheMaxEntries: number;
    /** How long an unwrapped key stays in that cache, in milliseconds. */
    cacheTtlMs: number;
  };
  logLevel: LogLevel;
}

/**
 * Command-line overrides, the highest-precedence source. Each field mirrors one `ARBOR_*`
 * environment variable and keeps its text form, so flags and variables are validated alike.
 */
export interface ConfigFlags {
  externalAddress?: string;
  /** `host:port`, or `[ipv6]:port`. */
  listen?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  storagePath?: string;
  logLevel?: string;
  allowInsecureListen?: boolean | string;
}

export interface LoadConfigOptions {
  /** Path of the YAML file; when omitted, no file is read. */
  file?: string;
  env: NodeJS.ProcessEnv;
  flags?: Partial<ConfigFlags>;
}
