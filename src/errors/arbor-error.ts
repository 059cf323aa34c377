import { type ErrorCode, statusOf } from "./registry.ts";

/** The parameter and the value a caller sent, quoted in messages and returned to clients. */
export interface ErrorDetail {
  parameter?: string;
  value?: string | number | boolean | null;
}

/**
 * The one error class Arbor throws for expected failures. `code` is stable; `message` names what
 * failed, on which value, and what to do next, and never contains key material or secrets.
 */
export class ArborError extends Error {
  override readonly name = "ArborError";
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: ErrorDetail;

  constructor(code: ErrorCode, message: string, detail: ErrorDetail = {}, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.status = statusOf(code);
    this.detail = detail;
  }
}

/** Message shared by every failed decryption, unwrap or signature check, whatever the cause. */
export const DECRYPTION_FAILED_MESSAGE =
  "decryption failed: the ciphertext, its context or its key does not match";

/** Returns the uniform decryption failure; the cause is kept for server logs only. */
export function decryptionFailed(cause?: unknown): ArborError {
  return new ArborError("DECRYPTION_FAILED", DECRYPTION_FAILED_MESSAGE, {}, { cause });
}

/** Builds an INVALID_ARGUMENT error that quotes the parameter and a printable form of its value. */
export function invalidArgument(parameter: string, value: unknown, reason: string): ArborError {
  return new ArborError("INVALID_ARGUMENT", `invalid ${parameter} ${quote(value)}: ${reason}`, {
    parameter,
    value: printable(value),
  });
}

/** Quotes a caller value for a message, shortened so a huge input cannot flood a log line. */
export function quote(value: unknown): string {
  return JSON.stringify(printable(value));
}

function printable(value: unknown): string | number | boolean | null {
  if (value === null || value === undefined) return null;
  // JSON has no Infinity or NaN, so they are quoted as text rather than turning into null.
  if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
  if (typeof value === "boolean") return value;
  const text = typeof value === "string" ? value : safeStringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function safeStringify(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

export function isArborError(error: unknown, code?: ErrorCode): error is ArborError {
  return error instanceof ArborError && (code === undefined || error.code === code);
}
