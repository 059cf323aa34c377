import { isIP } from "node:net";
import { resolve } from "node:path";

import {
  DEFAULT_SD_ID,
  SYSLOG_FACILITIES,
  type SyslogFacility,
} from "../audit/exporters/syslog-format.ts";
import { ArborError, invalidArgument, isArborError } from "../errors/index.ts";
import { parseDuration } from "./duration.ts";
import { isMapping } from "./sources.ts";

/** One entry of `audit.exporters`, validated, with defaults applied. Durations are in ms. */
export type ExporterConfig = FileExporterConfig | SyslogExporterConfig | HttpExporterConfig;

export interface FileExporterConfig {
  type: "file";
  /** Keys the exporter's cursor: renaming an exporter starts it again from the first record. */
  name: string;
  path: string;
  /** Size in bytes at which the file is rotated. */
  maxBytes: number;
  /** Rotated files kept (`<path>.1` to `<path>.<maxFiles>`). */
  maxFiles: number;
}

export interface SyslogExporterConfig {
  type: "syslog";
  name: string;
  transport: "udp" | "tcp" | "tls";
  host: string;
  port: number;
  facility: SyslogFacility;
  /** Largest UDP datagram in bytes (UDP only). */
  maxMessageBytes: number;
  /** Connect and write limit for TCP and TLS. */
  timeoutMs: number;
  /** PEM file of the certificates trusted for TLS; null trusts the system's. */
  caFile: string | null;
  /** SD-ID of the structured data element with seq and hash. */
  sdId: string;
}

export interface HttpExporterConfig {
  type: "http";
  name: string;
  url: string;
  headers: Record<string, string>;
  bearerTokenFile: string | null;
  timeoutMs: number;
}

export const EXPORTER_DEFAULTS = {
  file: { maxBytes: 100 * 1024 * 1024, maxFiles: 10 },
  syslog: {
    transport: "tcp",
    // 514 for UDP and plain TCP by custom, 6514 for TLS (RFC 5425).
    ports: { udp: 514, tcp: 514, tls: 6514 },
    // authpriv, the private security and authorization facility: syslog configurations
    // conventionally keep it in a file with restricted access, and records name principals.
    facility: "authpriv",
    // RFC 5426 section 3.2: every syslog receiver SHOULD accept UDP messages of 2048 bytes.
    maxMessageBytes: 2048,
    timeoutMs: 10_000,
  },
  http: { timeoutMs: 10_000 },
} as const;

// RFC 5426 section 3.2: IPv4 receivers MUST accept 480 bytes; 65507 is the largest IPv4 UDP payload.
const MIN_UDP_MESSAGE_BYTES = 480;
const MAX_UDP_MESSAGE_BYTES = 65_507;

const KEYS = {
  file: ["type", "name", "path", "max_bytes", "max_files"],
  syslog: [
    "type",
    "name",
    "transport",
    "host",
    "port",
    "facility",
    "max_message_bytes",
    "timeout",
    "ca_file",
    "sd_id",
  ],
  http: ["type", "name", "url", "headers", "bearer_token_file", "timeout"],
} as const;

type ExporterType = keyof typeof KEYS;

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const HOST_PATTERN =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
// RFC 5424 section 6.3.2: up to 32 printable characters without '=', ' ', ']', '"' and, before
// the enterprise number, without '@'.
const SD_ID_PATTERN = /^(?=.{1,32}$)[\x21\x23-\x3c\x3e\x3f\x41-\x5c\x5e-\x7e]+@\d+(?:\.\d+)*$/;
// RFC 9110 section 5.6.2: a header name is a token.
const HEADER_NAME_PATTERN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Headers the exporter sets itself, or that would break the request if overridden. */
const RESERVED_HEADERS = [
  "content-type",
  "content-length",
  "host",
  "transfer-encoding",
  "connection",
];

type Fail = (reason: string) => never;
type Parse<T> = (value: unknown, fail: Fail) => T;

/**
 * Returns the parser of `audit.exporters`: a list of mappings with `type` (file, syslog or http),
 * a unique `name` and the options of that type. Errors are INVALID_ARGUMENT naming the entry's key,
 * such as `audit.exporters[1].url`, with the value and `source`. Header values are never quoted,
 * because they may hold credentials.
 */
export function parseExporterList(source: string): Parse<ExporterConfig[]> {
  return (value, fail) => {
    if (!Array.isArray(value) || !value.every(isMapping)) {
      return fail("must be a list of mappings, one per exporter");
    }
    const exporters = value.map((entry, index) => parseExporter(new Entry(entry, index, source)));
    checkUnique(exporters, source);
    return exporters;
  };
}

/** One mapping of the list, with readers that name its keys in errors. */
class Entry {
  readonly #values: Record<string, unknown>;
  readonly #index: number;
  readonly source: string;

  constructor(values: Record<string, unknown>, index: number, source: string) {
    this.#values = values;
    this.#index = index;
    this.source = source;
  }

  key(name: string): string {
    return `audit.exporters[${this.#index}].${name}`;
  }

  has(name: string): boolean {
    const value = this.#values[name];
    return value !== undefined && value !== null;
  }

  /** Reads a key; a key set to null counts as unset, as elsewhere in the file. */
  read<T>(name: string, parse: Parse<T>, fallback: T): T {
    const value = this.#values[name];
    if (value === undefined || value === null) return fallback;
    return parse(value, (reason) => {
      throw invalidArgument(
        this.key(name),
        shownValue(name, value),
        `${reason} (set by ${this.source})`,
      );
    });
  }

  require<T>(name: string, parse: Parse<T>, needs: string): T {
    if (!this.has(name)) {
      throw new ArborError(
        "INVALID_ARGUMENT",
        `missing ${this.key(name)}: ${needs} (in ${this.source})`,
        { parameter: this.key(name), value: null },
      );
    }
    return this.read(name, parse, undefined as T);
  }

  /** Rejects keys that `type` does not know, so a misspelt option fails instead of being ignored. */
  rejectUnknownKeys(type: ExporterType): void {
    const known: readonly string[] = KEYS[type];
    const unknown = Object.keys(this.#values).find((name) => !known.includes(name));
    if (unknown === undefined) return;
    throw new ArborError(
      "INVALID_ARGUMENT",
      `unknown configuration key ${this.key(unknown)} in ${this.source}: a ${type} exporter accepts ${known.join(", ")}`,
      { parameter: this.key(unknown) },
    );
  }

  /** Rejects `name` unless `condition` holds, because the option would have no effect. */
  rejectUnless(condition: boolean, name: string, reason: string): void {
    if (condition || !this.has(name)) return;
    throw invalidArgument(
      this.key(name),
      shownValue(name, this.#values[name]),
      `${reason} (set by ${this.source})`,
    );
  }
}

function parseExporter(entry: Entry): ExporterConfig {
  const type = entry.require(
    "type",
    oneOf(["file", "syslog", "http"] as const),
    "every exporter needs a type: file, syslog or http",
  );
  entry.rejectUnknownKeys(type);
  const name = entry.require(
    "name",
    exporterName,
    "every exporter needs a unique name, which keys its cursor",
  );

  switch (type) {
    case "file":
      return parseFile(entry, name);
    case "syslog":
      return parseSyslog(entry, name);
    case "http":
      return parseHttp(entry, name);
  }
}

function parseFile(entry: Entry, name: string): FileExporterConfig {
  const defaults = EXPORTER_DEFAULTS.file;
  return {
    type: "file",
    name,
    path: entry.require("path", nonEmptyString, "a file exporter needs the path of its file"),
    maxBytes: entry.read("max_bytes", integerFrom(1, Number.MAX_SAFE_INTEGER), defaults.maxBytes),
    maxFiles: entry.read("max_files", integerFrom(1, 1000), defaults.maxFiles),
  };
}

function parseSyslog(entry: Entry, name: string): SyslogExporterConfig {
  const defaults = EXPORTER_DEFAULTS.syslog;
  const transport = entry.read(
    "transport",
    oneOf(["udp", "tcp", "tls"] as const),
    defaults.transport,
  );
  entry.rejectUnless(transport === "udp", "max_message_bytes", "applies to transport udp only");
  entry.rejectUnless(transport !== "udp", "timeout", "applies to transports tcp and tls only");
  entry.rejectUnless(transport === "tls", "ca_file", "applies to transport tls only");

  return {
    type: "syslog",
    name,
    transport,
    host: entry.require("host", host, "a syslog exporter needs the host of its receiver"),
    port: entry.read("port", integerFrom(1, 65_535), defaults.ports[transport]),
    facility: entry.read(
      "facility",
      oneOf(Object.keys(SYSLOG_FACILITIES) as SyslogFacility[]),
      defaults.facility,
    ),
    maxMessageBytes: entry.read(
      "max_message_bytes",
      integerFrom(MIN_UDP_MESSAGE_BYTES, MAX_UDP_MESSAGE_BYTES),
      defaults.maxMessageBytes,
    ),
    timeoutMs: entry.read("timeout", positiveDuration(entry.key("timeout")), defaults.timeoutMs),
    caFile: entry.read("ca_file", nonEmptyString, null),
    sdId: entry.read("sd_id", sdId, DEFAULT_SD_ID),
  };
}

function parseHttp(entry: Entry, name: string): HttpExporterConfig {
  const bearerTokenFile = entry.read("bearer_token_file", nonEmptyString, null);
  return {
    type: "http",
    name,
    url: entry.require("url", httpUrl, "an http exporter needs the URL batches are posted to"),
    headers: readHeaders(entry, bearerTokenFile !== null),
    bearerTokenFile,
    timeoutMs: entry.read(
      "timeout",
      positiveDuration(entry.key("timeout")),
      EXPORTER_DEFAULTS.http.timeoutMs,
    ),
  };
}

/** Reads `headers` without ever quoting a value, because values may be credentials. */
function readHeaders(entry: Entry, hasBearerToken: boolean): Record<string, string> {
  const value = entry.read(
    "headers",
    (raw, fail) => (isMapping(raw) ? raw : fail("must be a mapping of header names to values")),
    {},
  );
  const headers: Record<string, string> = {};
  const seen = new Set<string>();
  for (const [headerName, headerValue] of Object.entries(value)) {
    const key = entry.key(`headers.${headerName}`);
    const lower = headerName.toLowerCase();
    const reject = (reason: string): never => {
      throw new ArborError(
        "INVALID_ARGUMENT",
        `invalid ${key}: ${reason} (set by ${entry.source})`,
        {
          parameter: key,
        },
      );
    };

    if (!HEADER_NAME_PATTERN.test(headerName))
      reject("the name must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)");
    if (RESERVED_HEADERS.includes(lower)) reject("this header is set by the exporter itself");
    if (lower === "authorization" && hasBearerToken)
      reject("bearer_token_file already sets the Authorization header: remove one of the two");
    if (typeof headerValue !== "string" || headerValue === "")
      reject("the value must be a non-empty string");
    // Visible ASCII, spaces and tabs (RFC 9110 section 5.5); a line break would split the header.
    if (!/^[\x20-\x7e\t]+$/.test(headerValue as string))
      reject("the value must contain only printable ASCII characters, without line breaks");
    if (seen.has(lower)) reject("the header is set twice, in different letter case");
    seen.add(lower);
    headers[headerName] = headerValue as string;
  }
  return headers;
}

/** Names and file paths must be unique: a name keys a cursor, and two writers would mix one file. */
function checkUnique(exporters: readonly ExporterConfig[], source: string): void {
  const names = new Map<string, number>();
  const paths = new Map<string, number>();
  exporters.forEach((exporter, index) => {
    const firstName = names.get(exporter.name);
    if (firstName !== undefined) {
      throw invalidArgument(
        `audit.exporters[${index}].name`,
        exporter.name,
        `is already the name of audit.exporters[${firstName}]: each exporter needs its own name, which keys its cursor (set by ${source})`,
      );
    }
    names.set(exporter.name, index);

    if (exporter.type !== "file") return;
    const path = resolve(exporter.path);
    const firstPath = paths.get(path);
    if (firstPath !== undefined) {
      throw invalidArgument(
        `audit.exporters[${index}].path`,
        exporter.path,
        `is already the file of audit.exporters[${firstPath}]: two exporters would interleave their lines (set by ${source})`,
      );
    }
    paths.set(path, index);
  });
}

const exporterName: Parse<string> = (value, fail) => {
  if (typeof value !== "string" || !NAME_PATTERN.test(value)) {
    return fail(
      "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
    );
  }
  return value;
};

const nonEmptyString: Parse<string> = (value, fail) => {
  if (typeof value !== "string" || value === "") return fail("must be a non-empty string");
  return value;
};

const host: Parse<string> = (value, fail) => {
  if (typeof value !== "string" || (isIP(value) === 0 && !HOST_PATTERN.test(value))) {
    return fail("must be an IP address (IPv6 without brackets) or a host name");
  }
  return value;
};

const sdId: Parse<string> = (value, fail) => {
  if (typeof value !== "string" || !SD_ID_PATTERN.test(value)) {
    return fail(
      'must be name@<private enterprise number>, such as "arbor@32473", of at most 32 characters',
    );
  }
  return value;
};

/** Accepts an absolute http or https URL without credentials or fragment. */
const httpUrl: Parse<string> = (value, fail) => {
  if (typeof value !== "string" || !URL.canParse(value)) {
    return fail("must be an absolute http or https URL, such as https://siem.example.com/ingest");
  }
  const url = new URL(value);
  if (url.protocol !== "http:" && url.protocol !== "https:")
    return fail("must use the http or https scheme");
  if (url.username !== "" || url.password !== "") {
    return fail("must not contain a user name or password: use bearer_token_file or headers");
  }
  if (url.hash !== "") return fail("must not contain a fragment");
  return url.href;
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
function positiveDuration(key: string): Parse<number> {
  return (value, fail) => {
    const text = typeof value === "number" && Number.isSafeInteger(value) ? String(value) : value;
    if (typeof text !== "string") return fail('must be a duration such as "10s" or "1m"');

    let ms: number;
    try {
      ms = parseDuration(text, key);
    } catch (error) {
      if (!isArborError(error, "INVALID_ARGUMENT")) throw error;
      return fail(
        'must be a whole number with a unit d, h, m or s (such as "10s"), or a whole number of seconds',
      );
    }
    if (ms === 0) return fail("must be longer than zero");
    return ms;
  };
}

/**
 * Returns the value an error message quotes. A URL may carry a password or, in its query, an API key, so
 * both are replaced before the URL reaches a message or a log.
 */
function shownValue(name: string, value: unknown): unknown {
  if (name !== "url" || typeof value !== "string") return value;
  return value.replace(/\/\/[^/?#@]*@/, "//…@").replace(/\?.*$/, "?…");
}
