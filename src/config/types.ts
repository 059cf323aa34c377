import type { StorageConfig } from "../storage/index.ts";
import type { ExporterConfig } from "./exporters.ts";

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
  root: RootConfig;
  /** Audit exporters, in configuration order. */
  audit: {
    exporters: ExporterConfig[];
    /** Sign a checkpoint once this many records arrived since the last one. */
    checkpointRecords: number;
    /** Sign a checkpoint at least this often while records arrive, in milliseconds. */
    checkpointIntervalMs: number;
  };
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

/** The root of trust: the Shamir-sealed software root or a key on a PKCS#11 token. */
export type RootConfig = SealedRootConfig | Pkcs11RootConfig;

export interface SealedRootConfig {
  provider: "sealed";
  /** Unseal shares issued at initialization. */
  shares: number;
  /** Shares needed to unseal. */
  threshold: number;
}

/**
 * A root key on a PKCS#11 token. The user PIN is never part of the configuration: it comes from
 * the `ARBOR_PKCS11_PIN` environment variable, the PIN file, or an unseal request.
 */
export interface Pkcs11RootConfig {
  provider: "pkcs11";
  /** Path of the PKCS#11 module (shared library). */
  modulePath: string;
  /** Label of the token that contains the root keys; the slot is found by this label. */
  tokenLabel: string;
  /** Label of an existing key to adopt at initialization; null generates a new key. */
  keyLabel: string | null;
  /** File holding the user PIN; null when the PIN comes from elsewhere. */
  pinFile: string | null;
  // Declared so code that reads the sealed root's share settings compiles for either provider.
  shares?: undefined;
  threshold?: undefined;
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
  /** `sealed` or `pkcs11`. */
  rootProvider?: string;
  pkcs11Module?: string;
  pkcs11TokenLabel?: string;
  pkcs11KeyLabel?: string;
  /** Path of the PIN file; the PIN itself is never a flag. */
  pkcs11PinFile?: string;
}

export interface LoadConfigOptions {
  /** Path of the YAML file; when omitted, no file is read. */
  file?: string;
  env: NodeJS.ProcessEnv;
  flags?: Partial<ConfigFlags>;
}
