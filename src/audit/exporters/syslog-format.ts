import type { ExportRecord } from "./types.ts";

/** RFC 5424 facility codes by the names syslog daemons use. */
export const SYSLOG_FACILITIES = {
  kern: 0,
  user: 1,
  mail: 2,
  daemon: 3,
  auth: 4,
  syslog: 5,
  lpr: 6,
  news: 7,
  uucp: 8,
  cron: 9,
  authpriv: 10,
  ftp: 11,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
} as const;

export type SyslogFacility = keyof typeof SYSLOG_FACILITIES;

/** RFC 5424 severity codes. */
export const SEVERITY = { warning: 4, notice: 5, informational: 6 } as const;

export const APP_NAME = "arbor";

/**
 * SD-ID of the structured data element that carries `seq` and `hash`. RFC 5424 section 7.2.2
 * allows private SD-IDs only as `name@<private enterprise number>`.
 * NOTE: Arbor has no private enterprise number of its own; 32473 is the number RFC 5612 reserves
 * for documentation. Operators with their own number can set `sd_id`.
 */
export const DEFAULT_SD_ID = "arbor@32473";

export interface SyslogFormatOptions {
  facility: SyslogFacility;
  /** HOSTNAME field; characters outside printable US-ASCII are dropped. */
  hostname: string;
  /** PROCID field, usually the process id. */
  procId: string;
  structuredDataId: string;
}

export interface SyslogMessage {
  bytes: Buffer;
  /** True when the record's JSON did not fit and was left out (see `formatSyslogMessage`). */
  bodyOmitted: boolean;
}

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/**
 * Formats one record as an RFC 5424 message:
 * `<PRI>1 TIMESTAMP HOSTNAME arbor PROCID MSGID [sd-id seq="..." hash="..."] MSG`. MSGID is the
 * event type, TIMESTAMP the event time in UTC with milliseconds, and MSG the stored JSON. RFC 5424
 * section 6.4 requires a UTF-8 byte order mark before MSG text in UTF-8, so MSG starts with one
 * when the JSON has non-ASCII characters. Pure ASCII needs none.
 *
 * When the message would exceed `maxBytes`, MSG is left out and the structured data gains
 * `omitted_bytes`, the length of the JSON left out. The receiver still gets every record's seq,
 * hash, type, time and severity, and the full record stays in Arbor's log under that seq. A cut
 * JSON text would be neither parseable nor verifiable against the hash.
 */
export function formatSyslogMessage(
  record: ExportRecord,
  options: SyslogFormatOptions,
  maxBytes = Number.POSITIVE_INFINITY,
): SyslogMessage {
  const pri = SYSLOG_FACILITIES[options.facility] * 8 + severityOf(record);
  const header = [
    `<${pri}>1`,
    formatTimestamp(record.at),
    headerField(options.hostname, 255),
    APP_NAME,
    headerField(options.procId, 128),
    headerField(record.type, 32),
  ].join(" ");
  const params = `seq="${record.seq}" hash="${escapeParamValue(record.hash)}"`;

  const body = Buffer.from(record.json, "utf8");
  // The UTF-8 length equals the UTF-16 length only when every character is ASCII.
  const bom = body.length === record.json.length ? Buffer.alloc(0) : BOM;
  const full = Buffer.concat([
    Buffer.from(`${header} [${options.structuredDataId} ${params}] `, "utf8"),
    bom,
    body,
  ]);
  if (full.length <= maxBytes) return { bytes: full, bodyOmitted: false };

  // NOTE: with a very long HOSTNAME this shortened form can still exceed maxBytes; it is sent as is.
  const short = `${header} [${options.structuredDataId} ${params} omitted_bytes="${body.length}"]`;
  return { bytes: Buffer.from(short, "utf8"), bodyOmitted: true };
}

/** Prefixes the message with its length in bytes and a space (RFC 6587 section 3.4.1, octet counting). */
export function frameOctetCounted(message: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${message.length} `, "ascii"), message]);
}

/**
 * Maps the record's `outcome` to a severity: failure to warning, denied to notice, and success
 * (or no outcome, as for checkpoints) to informational.
 */
export function severityOf(record: ExportRecord): number {
  switch (outcomeOf(record.json)) {
    case "failure":
      return SEVERITY.warning;
    case "denied":
      return SEVERITY.notice;
    default:
      return SEVERITY.informational;
  }
}

function outcomeOf(json: string): unknown {
  try {
    const parsed: unknown = JSON.parse(json);
    return typeof parsed === "object" && parsed !== null
      ? (parsed as Record<string, unknown>).outcome
      : undefined;
  } catch {
    return undefined;
  }
}

/** RFC 3339 in UTC with milliseconds, such as `2026-01-01T00:00:00.000Z`; `-` when unknown. */
function formatTimestamp(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? "-" : date.toISOString();
}

/** Keeps printable US-ASCII (33 to 126) up to `maxLength` characters; `-` (NILVALUE) when empty. */
function headerField(value: string, maxLength: number): string {
  const printable = value.replace(/[^\x21-\x7e]/g, "").slice(0, maxLength);
  return printable === "" ? "-" : printable;
}

/** Escapes `"`, `\` and `]` with a backslash (RFC 5424 section 6.3.3). */
function escapeParamValue(value: string): string {
  return value.replace(/["\\\]]/g, (char) => `\\${char}`);
}
