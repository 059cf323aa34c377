import { BlockList, isIP } from "node:net";

import { ArborError, invalidArgument, isArborError } from "../errors/index.ts";
import { parseDuration } from "./duration.ts";
import { parseExporterList } from "./exporters.ts";
import type { SettingKey, SettingLayer } from "./sources.ts";
import { LOG_LEVELS, type ArborConfig, type LogLevel, type RootConfig } from "./types.ts";

export const DEFAULT_LISTEN = { host: "127.0.0.1", port: 8200 } as const;
export const DEFAULT_STORAGE_PATH = "./arbor.db";
export const DEFAULT_ROOT = { provider: "sealed", shares: 5, threshold: 3 } as const;
export const DEFAULT_LIMITS = {
  maxPayloadBytes: 1_048_576,
  // Room for the base64 form of a maximal payload (4/3 of it) plus the rest of the JSON body.
  maxBodyBytes: 2_097_152,
  unsealAttemptsPerMinute: 10,
  cacheMaxEntries: 10_000,
  cacheTtlMs: 5 * 60_000,
} as const;
export const DEFAULT_LOG_LEVEL: LogLevel = "info";
/** A checkpoint every 1,000 records or every minute while records arrive. */
export const DEFAULT_AUDIT = { checkpointRecords: 1_000, checkpointIntervalMs: 60_000 } as const;

// Same bounds as the sealed root provider accepts.
const MIN_SHARES = 2;
const MAX_SHARES = 255;

const HOSTNAME_PATTERN =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Parses one setting's value; `fail` throws INVALID_ARGUMENT naming the key and the source. */
type Parse<T> = (value: unknown, fail: (reason: string) => never) => T;

/**
 * Validates the merged settings and applies defaults. Cross-setting rules (both TLS files,
 * threshold within shares, body limit above payload limit, TLS beyond loopback) run last.
 */
export function buildConfig(settings: SettingLayer): ArborConfig {
  function read<T>(key: SettingKey, parse: Parse<T>, fallback: T): T;
  function read<T>(key: SettingKey, parse: Parse<T>): T | undefined;
  function read<T>(key: SettingKey, parse: Parse<T>, fallback?: T): T | undefined {
    const setting = settings[key];
    if (setting === undefined) return fallback;
    if (setting.error !== undefined) throw setting.error;
    return parse(setting.value, (reason) => {
      throw invalidArgument(key, setting.value, `${reason} (set by ${setting.source})`);
    });
  }
  const sourceOf = (key: SettingKey): string => settings[key]?.source ?? "the default";

  const listen = {
    host: read("listen.host", parseHost, DEFAULT_LISTEN.host),
    port: read("listen.port", integerFrom(0, 65_535), DEFAULT_LISTEN.port),
  };
  const tls = buildTls(
    read("tls.cert_file", nonEmptyString),
    read("tls.key_file", nonEmptyString),
    sourceOf,
  );
  const allowInsecureListen = read("allow_insecure_listen", boolean, false);
  assertSecureListen(listen, tls !== null, allowInsecureListen, sourceOf("listen.host"));

  const root = buildRoot(read, settings, sourceOf);

  return {
    externalAddress: read(
      "external_address",
      parseExternalAddress,
      defaultExternalAddress(listen, tls !== null),
    ),
    listen,
    tls,
    allowInsecureListen,
    storage: {
      kind: read("storage.kind", oneOf(["sqlite"] as const), "sqlite"),
      path: read("storage.path", nonEmptyString, DEFAULT_STORAGE_PATH),
    },
    root,
    audit: {
      exporters: read("audit.exporters", parseExporterList(sourceOf("audit.exporters")), []),
      checkpointRecords: read(
        "audit.checkpoint_records",
        integerFrom(1, Number.MAX_SAFE_INTEGER),
        DEFAULT_AUDIT.checkpointRecords,
      ),
      checkpointIntervalMs: read(
        "audit.checkpoint_interval",
        positiveDuration("audit.checkpoint_interval"),
        DEFAULT_AUDIT.checkpointIntervalMs,
      ),
    },
    limits: buildLimits(read, sourceOf),
    logLevel: read("log_level", oneOf(LOG_LEVELS), DEFAULT_LOG_LEVEL),
  };
}

type Read = <T>(key: SettingKey, parse: Parse<T>, fallback: T) => T;

/** `read` with and without a fallback. */
interface ReadSetting {
  <T>(key: SettingKey, parse: Parse<T>, fallback: T): T;
  <T>(key: SettingKey, parse: Parse<T>): T | undefined;
}

const SEALED_KEYS: readonly SettingKey[] = ["root.shares", "root.threshold"];
const PKCS11_KEYS: readonly SettingKey[] = [
  "root.module",
  "root.token_label",
  "root.key_label",
  "root.pin_file",
];

/**
 * Builds the root section. Settings of the other provider are rejected rather than ignored, so a
 * configuration that mixes them (shares with a PKCS#11 root, a module path with the sealed one)
 * fails at start instead of doing something other than the operator expects.
 */
function buildRoot(
  read: ReadSetting,
  settings: SettingLayer,
  sourceOf: (key: SettingKey) => string,
): RootConfig {
  const provider = read(
    "root.provider",
    oneOf(["sealed", "pkcs11"] as const),
    DEFAULT_ROOT.provider,
  );
  const foreign = (provider === "sealed" ? PKCS11_KEYS : SEALED_KEYS).find(
    (key) => settings[key] !== undefined,
  );
  if (foreign !== undefined) {
    throw new ArborError(
      "INVALID_ARGUMENT",
      `${foreign} (set by ${sourceOf(foreign)}) does not apply to root.provider ${provider} ` +
        `(set by ${sourceOf("root.provider")}): remove it, or change root.provider`,
      { parameter: foreign },
    );
  }

  if (provider === "pkcs11") {
    const required = (key: SettingKey, parse: Parse<string>): string => {
      const value = read(key, parse);
      if (value === undefined) {
        throw new ArborError(
          "INVALID_ARGUMENT",
          `missing ${key}: root.provider pkcs11 (set by ${sourceOf("root.provider")}) needs ` +
            "root.module and root.token_label",
          { parameter: key, value: null },
        );
      }
      return value;
    };
    return {
      provider,
      modulePath: required("root.module", nonEmptyString),
      tokenLabel: required("root.token_label", tokenLabel),
      keyLabel: read("root.key_label", nonEmptyString) ?? null,
      pinFile: read("root.pin_file", nonEmptyString) ?? null,
    };
  }

  const shares = read("root.shares", integerFrom(MIN_SHARES, MAX_SHARES), DEFAULT_ROOT.shares);
  const threshold = read(
    "root.threshold",
    integerFrom(MIN_SHARES, MAX_SHARES),
    DEFAULT_ROOT.threshold,
  );
  if (threshold > shares) {
    throw invalidArgument(
      "root.threshold",
      threshold,
      `must not exceed root.shares, which is ${shares} from ${sourceOf("root.shares")} ` +
        `(set by ${sourceOf("root.threshold")})`,
    );
  }
  return { provider, shares, threshold };
}

/** CK_TOKEN_INFO.label is 32 bytes padded with spaces, so a label has at most 32 bytes. */
const tokenLabel: Parse<string> = (value, fail) => {
  if (typeof value !== "string" || value.trim() === "") return fail("must be a non-empty string");
  if (Buffer.byteLength(value, "utf8") > 32) return fail("must be at most 32 bytes");
  if (value !== value.trimEnd()) return fail("must not end with spaces");
  return value;
};

function buildLimits(read: Read, sourceOf: (key: SettingKey) => string): ArborConfig["limits"] {
  const positive = integerFrom(1, Number.MAX_SAFE_INTEGER);
  const maxPayloadBytes = read(
    "limits.max_payload_bytes",
    positive,
    DEFAULT_LIMITS.maxPayloadBytes,
  );
  const maxBodyBytes = read("limits.max_body_bytes", positive, DEFAULT_LIMITS.maxBodyBytes);

  // A maximal payload arrives base64-encoded, so the body limit must hold at least that.
  const base64Length = 4 * Math.ceil(maxPayloadBytes / 3);
  if (maxBodyBytes < base64Length) {
    throw invalidArgument(
      "limits.max_body_bytes",
      maxBodyBytes,
      `must be at least ${base64Length}, the base64 length of limits.max_payload_bytes ` +
        `(${maxPayloadBytes}) (set by ${sourceOf("limits.max_body_bytes")})`,
    );
  }

  return {
    maxPayloadBytes,
    maxBodyBytes,
    unsealAttemptsPerMinute: read(
      "limits.unseal_attempts_per_minute",
      positive,
      DEFAULT_LIMITS.unsealAttemptsPerMinute,
    ),
    cacheMaxEntries: read("limits.cache_max_entries", positive, DEFAULT_LIMITS.cacheMaxEntries),
    cacheTtlMs: read(
      "limits.cache_ttl",
      positiveDuration("limits.cache_ttl"),
      DEFAULT_LIMITS.cacheTtlMs,
    ),
  };
}

function buildTls(
  certFile: string | undefined,
  keyFile: string | undefined,
  sourceOf: (key: SettingKey) => string,
): ArborConfig["tls"] {
  if (certFile === undefined && keyFile === undefined) return null;
  if (certFile !== undefined && keyFile !== undefined) return { certFile, keyFile };

  const [missing, present]: [SettingKey, SettingKey] =
    certFile === undefined ? ["tls.cert_file", "tls.key_file"] : ["tls.key_file", "tls.cert_file"];
  throw new ArborError(
    "INVALID_ARGUMENT",
    `missing ${missing}: ${present} is set (by ${sourceOf(present)}) and TLS needs both the ` +
      `certificate and the key file. Set ${missing}, or unset ${present}`,
    { parameter: missing, value: null },
  );
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/** True for `localhost` and loopback addresses, including IPv4-mapped IPv6 forms. */
export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === "localhost") return true;

  const family = isIP(host);
  if (family === 0) return false;
  return LOOPBACK.check(host, family === 6 ? "ipv6" : "ipv4");
}

/**
 * Rejects listening beyond loopback without TLS unless `allow_insecure_listen` is set, because
 * operator tokens and plaintexts would cross the network in cleartext. A host name other than
 * `localhost` counts as beyond loopback, since it is not resolved here.
 */
function assertSecureListen(
  listen: { host: string; port: number },
  tls: boolean,
  allowInsecureListen: boolean,
  hostSource: string,
): void {
  if (tls || allowInsecureListen || isLoopbackHost(listen.host)) return;

  throw new ArborError(
    "INVALID_ARGUMENT",
    `listening on ${formatHostPort(listen.host, listen.port)} without TLS is not allowed: ` +
      `${listen.host} (set by ${hostSource}) is not a loopback address, so tokens would cross the ` +
      "network in cleartext. Set tls.cert_file and tls.key_file, or set allow_insecure_listen " +
      "to true when a TLS-terminating proxy sits in front",
    { parameter: "listen.host", value: listen.host },
  );
}

/**
 * Derives the external address from the listen address when none is set. A wildcard host
 * becomes 127.0.0.1.
 * NOTE: behind a proxy, on a wildcard host or on port 0 the derived address is a guess, so
 * deployments that serve other machines should set external_address.
 */
function defaultExternalAddress(listen: { host: string; port: number }, tls: boolean): string {
  const wildcard = listen.host === "0.0.0.0" || listen.host === "::";
  const host = wildcard ? "127.0.0.1" : listen.host;
  return `${tls ? "https" : "http"}://${formatHostPort(host, listen.port)}`;
}

function formatHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

const nonEmptyString: Parse<string> = (value, fail) => {
  if (typeof value !== "string" || value === "") return fail("must be a non-empty string");
  return value;
};

const boolean: Parse<boolean> = (value, fail) => {
  if (typeof value !== "boolean") return fail("must be true or false");
  return value;
};

function integerFrom(min: number, max: number): Parse<number> {
  return (value, fail) => {
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `at least ${min}` : `from ${min} to ${max}`;
      return fail(`must be a whole number ${range}`);
    }
    return value;
  };
}

function oneOf<const T extends string>(values: readonly T[]): Parse<T> {
  return (value, fail) => {
    if (typeof value !== "string" || !(values as readonly string[]).includes(value)) {
      return fail(`must be one of ${values.map((v) => JSON.stringify(v)).join(", ")}`);
    }
    return value as T;
  };
}

/** Accepts a duration string or, as YAML writes it unquoted, a whole number of seconds. */
function positiveDuration(key: SettingKey): Parse<number> {
  return (value, fail) => {
    const text = typeof value === "number" && Number.isSafeInteger(value) ? String(value) : value;
    if (typeof text !== "string") return fail('must be a duration such as "5m" or "30s"');

    let ms: number;
    try {
      ms = parseDuration(text, key);
    } catch (error) {
      if (!isArborError(error, "INVALID_ARGUMENT")) throw error;
      return fail(
        'must be a whole number with a unit d, h, m or s (such as "5m" or "30s"), or a whole number of seconds',
      );
    }
    if (ms === 0) return fail("must be longer than zero");
    return ms;
  };
}

const parseHost: Parse<string> = (value, fail) => {
  if (typeof value !== "string" || (isIP(value) === 0 && !HOSTNAME_PATTERN.test(value))) {
    return fail("must be an IP address (IPv6 without brackets) or a host name");
  }
  return value;
};

/** Accepts an absolute http or https URL and returns it without a trailing slash. */
const parseExternalAddress: Parse<string> = (value, fail) => {
  if (typeof value !== "string" || !URL.canParse(value)) {
    return fail("must be an absolute http or https URL, such as https://arbor.example.com");
  }

  const url = new URL(value);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return fail("must use the http or https scheme");
  }
  if (url.username !== "" || url.password !== "")
    return fail("must not contain a user name or password");
  if (url.search !== "" || url.hash !== "") return fail("must not contain a query or a fragment");
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
};
