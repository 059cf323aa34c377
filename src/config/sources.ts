import { parseDocument } from "yaml";

import { ArborError, invalidArgument, isArborError } from "../errors/index.ts";
import type { ConfigFlags } from "./types.ts";

/** Every setting, named by its dotted path in `arbor.yaml`. */
export const SETTING_KEYS = [
  "external_address",
  "listen.host",
  "listen.port",
  "tls.cert_file",
  "tls.key_file",
  "allow_insecure_listen",
  "storage.kind",
  "storage.path",
  "root.provider",
  "root.shares",
  "root.threshold",
  "root.module",
  "root.token_label",
  "root.key_label",
  "root.pin_file",
  "audit.exporters",
  "audit.checkpoint_records",
  "audit.checkpoint_interval",
  "limits.max_payload_bytes",
  "limits.max_body_bytes",
  "limits.unseal_attempts_per_minute",
  "limits.cache_max_entries",
  "limits.cache_ttl",
  "log_level",
] as const;

export type SettingKey = (typeof SETTING_KEYS)[number];

/** One value and where it came from, for error messages. */
export interface Setting {
  value: unknown;
  /**
   * Set when the text form could not be parsed. It is thrown only if this setting wins the
   * merge, so an invalid value that a higher source overrides is ignored, as in the file.
   */
  error?: ArborError;
  /** Such as `file /etc/arbor/arbor.yaml`, `environment variable ARBOR_LISTEN` or `flag --listen`. */
  source: string;
}

/** The settings one source provides; absent keys leave the decision to lower sources. */
export type SettingLayer = Partial<Record<SettingKey, Setting>>;

const KEY_SET: ReadonlySet<string> = new Set(SETTING_KEYS);
const SECTIONS: ReadonlyMap<string, string[]> = sectionsOf(SETTING_KEYS);

function sectionsOf(keys: readonly string[]): Map<string, string[]> {
  const sections = new Map<string, string[]>();
  for (const key of keys) {
    const dot = key.indexOf(".");
    if (dot === -1) continue;
    const section = key.slice(0, dot);
    sections.set(section, [...(sections.get(section) ?? []), key.slice(dot + 1)]);
  }
  return sections;
}

/**
 * Parses the text of `arbor.yaml`. A key set to null (or left empty) counts as not set. Unknown
 * keys, duplicate keys and several documents in one file are rejected.
 */
export function parseConfigFile(text: string, path: string): SettingLayer {
  const source = `file ${path}`;
  const document = parseDocument(text, { uniqueKeys: true });
  const [error] = document.errors;
  if (error !== undefined) {
    const reason = (error.message.split("\n")[0] ?? error.code).replace(/:$/, "");
    throw new ArborError(
      "INVALID_ARGUMENT",
      `invalid configuration file ${path}: ${reason}. Fix the YAML syntax and start again`,
      { parameter: "file", value: path },
    );
  }

  const content: unknown = document.toJS();
  if (content === null || content === undefined) return {};
  if (!isMapping(content)) {
    throw new ArborError(
      "INVALID_ARGUMENT",
      `invalid configuration file ${path}: the top level must be a mapping of keys such as listen or storage`,
      { parameter: "file", value: path },
    );
  }

  const layer: SettingLayer = {};
  for (const [key, value] of Object.entries(content)) {
    const section = SECTIONS.get(key);
    if (section === undefined) {
      if (!KEY_SET.has(key)) throw unknownKey(key, [...topLevelKeys()], source);
      if (value !== null) layer[key as SettingKey] = { value, source };
      continue;
    }

    if (value === null) continue;
    if (!isMapping(value)) {
      throw invalidArgument(
        key,
        value,
        `must be a mapping with the keys ${section.join(", ")} (set by ${source})`,
      );
    }
    for (const [inner, innerValue] of Object.entries(value)) {
      const fullKey = `${key}.${inner}`;
      if (fullKey === "root.pin") throw pinInFile(source);
      if (!KEY_SET.has(fullKey)) throw unknownKey(fullKey, section, source);
      if (innerValue !== null) layer[fullKey as SettingKey] = { value: innerValue, source };
    }
  }
  return layer;
}

function* topLevelKeys(): Generator<string> {
  const seen = new Set<string>();
  for (const key of SETTING_KEYS) {
    const top = key.split(".")[0]!;
    if (!seen.has(top)) yield top;
    seen.add(top);
  }
}

function unknownKey(key: string, known: string[], source: string): ArborError {
  return new ArborError(
    "INVALID_ARGUMENT",
    `unknown configuration key ${key} in ${source}: expected one of ${known.join(", ")}`,
    { parameter: key },
  );
}

function pinInFile(source: string): ArborError {
  return new ArborError(
    "INVALID_ARGUMENT",
    `root.pin in ${source} is not accepted: the PKCS#11 PIN is never read from the configuration file. Remove it, and set the ARBOR_PKCS11_PIN environment variable or root.pin_file instead`,
    { parameter: "root.pin" },
  );
}

export function isMapping(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    !(value instanceof Uint8Array)
  );
}

/** A setting that the environment and the command line both provide, in text form. */
interface TextSetting {
  variable: string;
  flag: keyof ConfigFlags;
  option: string;
  /** `listen` is split into host and port; the others map to one key. */
  target: SettingKey | "listen";
}

const TEXT_SETTINGS: readonly TextSetting[] = [
  {
    variable: "ARBOR_EXTERNAL_ADDRESS",
    flag: "externalAddress",
    option: "--external-address",
    target: "external_address",
  },
  { variable: "ARBOR_LISTEN", flag: "listen", option: "--listen", target: "listen" },
  {
    variable: "ARBOR_TLS_CERT_FILE",
    flag: "tlsCertFile",
    option: "--tls-cert-file",
    target: "tls.cert_file",
  },
  {
    variable: "ARBOR_TLS_KEY_FILE",
    flag: "tlsKeyFile",
    option: "--tls-key-file",
    target: "tls.key_file",
  },
  {
    variable: "ARBOR_STORAGE_PATH",
    flag: "storagePath",
    option: "--storage-path",
    target: "storage.path",
  },
  { variable: "ARBOR_LOG_LEVEL", flag: "logLevel", option: "--log-level", target: "log_level" },
  {
    variable: "ARBOR_ALLOW_INSECURE_LISTEN",
    flag: "allowInsecureListen",
    option: "--allow-insecure-listen",
    target: "allow_insecure_listen",
  },
  {
    variable: "ARBOR_ROOT_PROVIDER",
    flag: "rootProvider",
    option: "--root",
    target: "root.provider",
  },
  {
    variable: "ARBOR_PKCS11_MODULE",
    flag: "pkcs11Module",
    option: "--module",
    target: "root.module",
  },
  {
    variable: "ARBOR_PKCS11_TOKEN_LABEL",
    flag: "pkcs11TokenLabel",
    option: "--token-label",
    target: "root.token_label",
  },
  {
    variable: "ARBOR_PKCS11_KEY_LABEL",
    flag: "pkcs11KeyLabel",
    option: "--key-label",
    target: "root.key_label",
  },
  {
    // The path of the PIN file only. The PIN itself (ARBOR_PKCS11_PIN) is read by the PKCS#11
    // provider and never enters the configuration.
    variable: "ARBOR_PKCS11_PIN_FILE",
    flag: "pkcs11PinFile",
    option: "--pin-file",
    target: "root.pin_file",
  },
];

/**
 * Reads the `ARBOR_*` variables that configure the server. An empty variable counts as not set,
 * as container runtimes often pass empty values for unset ones. Other `ARBOR_*` variables (such
 * as the CLI's `ARBOR_ADDR` and `ARBOR_TOKEN`) are ignored.
 */
export function environmentLayer(env: NodeJS.ProcessEnv): SettingLayer {
  const layer: SettingLayer = {};
  for (const setting of TEXT_SETTINGS) {
    const value = env[setting.variable];
    if (value === undefined || value === "") continue;
    addText(layer, setting.target, value, `environment variable ${setting.variable}`);
  }
  return layer;
}

export function flagLayer(flags: Partial<ConfigFlags>): SettingLayer {
  const layer: SettingLayer = {};
  for (const setting of TEXT_SETTINGS) {
    const value = flags[setting.flag];
    if (value === undefined) continue;
    addText(layer, setting.target, value, `flag ${setting.option}`);
  }
  return layer;
}

function addText(
  layer: SettingLayer,
  target: TextSetting["target"],
  value: unknown,
  source: string,
): void {
  try {
    if (target === "listen") {
      const { host, port } = parseListenAddress(value, source);
      layer["listen.host"] = { value: host, source };
      layer["listen.port"] = { value: port, source };
    } else if (target === "allow_insecure_listen") {
      layer[target] = { value: parseBooleanText(target, value, source), source };
    } else {
      layer[target] = { value, source };
    }
  } catch (error) {
    if (!isArborError(error)) throw error;
    const keys: SettingKey[] = target === "listen" ? ["listen.host", "listen.port"] : [target];
    for (const key of keys) layer[key] = { value, source, error };
  }
}

const BRACKETED_LISTEN = /^\[([^\]]+)\]:(\d{1,5})$/;
const PLAIN_LISTEN = /^([^:[\]]+):(\d{1,5})$/;

/** Splits `host:port` or `[ipv6]:port`; the host and port are validated like the file's. */
function parseListenAddress(value: unknown, source: string): { host: string; port: number } {
  const text = typeof value === "string" ? value : "";
  const match = BRACKETED_LISTEN.exec(text) ?? PLAIN_LISTEN.exec(text);
  if (match === null) {
    throw invalidArgument(
      "listen",
      value,
      `expected host:port, such as 127.0.0.1:8200 or [::1]:8200 (set by ${source})`,
    );
  }
  return { host: match[1]!, port: Number(match[2]) };
}

function parseBooleanText(key: string, value: unknown, source: string): boolean {
  if (typeof value === "boolean") return value;
  if (value === "true" || value === "1") return true;
  if (value === "false" || value === "0") return false;
  throw invalidArgument(key, value, `expected true, false, 1 or 0 (set by ${source})`);
}
