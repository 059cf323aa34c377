import { pino, type DestinationStream, type Logger } from "pino";

/**
 * Field names whose values are secrets or may carry them. Wherever one of these appears in a
 * logged object, down to {@link REDACT_DEPTH} levels of nesting, its value is replaced.
 */
export const SECRET_FIELD_NAMES = [
  "authorization",
  "cookie",
  "headers",
  "body",
  "token",
  "rootToken",
  "secret",
  "clientSecret",
  "client_secret",
  "access_token",
  "refresh_token",
  "subject_token",
  "actor_token",
  "share",
  "shares",
  "plaintext",
  "password",
  "pin",
  "dataKey",
  "wrappedDataKey",
  "material",
  "privateKey",
] as const;

/** Nesting levels below the top that redaction covers; pino's paths have no recursive wildcard. */
const REDACT_DEPTH = 4;

export const REDACTED = "[redacted]";

/** The redaction paths: every secret field name at the top level and under 1 to 4 wildcards. */
export function redactPaths(): string[] {
  const paths: string[] = [];
  for (const name of SECRET_FIELD_NAMES) {
    for (let depth = 0; depth <= REDACT_DEPTH; depth++) {
      paths.push([...Array<string>(depth).fill("*"), name].join("."));
    }
  }
  return paths;
}

export interface LoggerOptions {
  /** pino level name; default `info`. */
  level?: string;
  /** Where log lines go; default standard output. Tests pass a stream that collects them. */
  destination?: DestinationStream;
}

/**
 * Creates the process logger: JSON lines with the redaction list applied. Request logs never
 * include headers or bodies (see the log controller in `app.ts`); redaction is the second line of
 * defence for objects that reach a log call by mistake.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const config = {
    level: options.level ?? "info",
    redact: { paths: redactPaths(), censor: REDACTED },
  };
  return options.destination === undefined ? pino(config) : pino(config, options.destination);
}
