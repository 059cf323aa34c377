import { isArborError } from "../errors/index.ts";

/** Process exit codes of the `arbor` command. */
export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_USAGE = 2;
/** 128 + SIGINT, as shells report a process stopped by Ctrl-C. */
export const EXIT_INTERRUPTED = 130;

/**
 * Codes of failures that happen in the CLI itself rather than on the server. Server failures keep
 * the server's stable code (see docs/errors.md), so scripts can tell the two apart.
 */
export type CliErrorCode =
  | "USAGE"
  | "CONNECTION_FAILED"
  | "TIMED_OUT"
  | "INVALID_RESPONSE"
  | "FILE_ERROR"
  | "CANCELLED"
  | "AUDIT_DAMAGED"
  | "PROOF_INVALID"
  | "TEST_FAILED"
  | "KEY_MISMATCH"
  | "UNEXPECTED";

export interface CliErrorOptions {
  /** Next step for the user, printed on its own line after the message. */
  hint?: string;
  exitCode?: number;
  /** The server's request id, for failures the server reported. */
  requestId?: string;
  cause?: unknown;
}

/**
 * A failure the CLI reports to its user: a server error with its stable code, or a local failure
 * with a {@link CliErrorCode}. The top-level handler prints it and exits with `exitCode`.
 */
export class CliError extends Error {
  override readonly name = "CliError";
  /** A server error code such as `KEY_NOT_FOUND`, or a {@link CliErrorCode}. */
  readonly code: string;
  readonly hint: string | undefined;
  readonly exitCode: number;
  readonly requestId: string | undefined;

  constructor(code: string, message: string, options: CliErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.code = code;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? EXIT_ERROR;
    this.requestId = options.requestId;
  }
}

/** Builds the error for a command line that cannot be run as written; it exits with code 2. */
export function usageError(message: string, hint?: string): CliError {
  return new CliError("USAGE", message, {
    exitCode: EXIT_USAGE,
    ...(hint === undefined ? {} : { hint }),
  });
}

/**
 * Converts an error thrown by local code (the envelope streams, the configuration loader) into a
 * CliError with a hint. Errors that are neither ArborError nor CliError are left for the caller.
 */
export function toCliError(error: unknown): CliError | undefined {
  if (error instanceof CliError) return error;
  if (isArborError(error)) {
    const hint = hintFor(error.code, { tokenSent: true });
    return new CliError(error.code, error.message, {
      cause: error,
      ...(hint === undefined ? {} : { hint }),
    });
  }
  return undefined;
}

/** Facts about the request that change which hint helps. */
export interface HintContext {
  /** Whether the request carried an operator token. */
  tokenSent: boolean;
  requestId?: string;
}

/** Returns what the user should do next after a server error code, or undefined if nothing fits. */
export function hintFor(code: string, context: HintContext): string | undefined {
  switch (code) {
    case "SEALED":
      return "run `arbor unseal`: once per share until the threshold is reached, or once with the HSM PIN";
    case "NOT_INITIALIZED":
      return "run `arbor init`, or start a development server with `arbor dev`";
    case "ALREADY_INITIALIZED":
      return "this server was initialised before; unseal it with `arbor unseal` and use its root token";
    case "ALREADY_UNSEALED":
      return "nothing to do: check with `arbor status`";
    case "UNAUTHENTICATED":
      return context.tokenSent
        ? "the operator token is invalid, expired or revoked: set ARBOR_TOKEN or pass --token with a valid one"
        : "no operator token was sent: set ARBOR_TOKEN or pass --token";
    case "FORBIDDEN":
      return "the token's scope or read-only flag does not allow this; use a token that covers it";
    case "KEY_NOT_FOUND":
      return "check the path with `arbor key list`; a key outside the token's environment or tenant is reported the same way";
    case "KEY_VERSION_NOT_FOUND":
      return "list the key's versions with `arbor key show KEY`";
    case "KEY_STATE_CONFLICT":
      return "check the version states with `arbor key show KEY`";
    case "PATH_IN_USE":
      return "key paths are never reused, even after revocation; choose another path";
    case "INVALID_PATH":
      return "a key path is env, env/tenant, env/service:purpose or env/tenant/service:purpose, where purpose is encrypt or sign";
    case "PURPOSE_MISMATCH":
      return "use an encrypt key for data keys and encryption, and a sign key for tokens";
    case "DECRYPTION_FAILED":
      return "check that the input is complete and unmodified, and that every --context entry equals the one given at encryption";
    case "CEREMONY_NONCE_MISMATCH":
      return "another unseal ceremony started meanwhile; check `arbor status` and submit the share again";
    case "CEREMONY_NOT_FOUND":
      return "no unseal is in progress; run `arbor unseal` again to start one";
    case "UNSEAL_FAILED":
      return "the submitted shares do not belong together; the ceremony restarted, so submit threshold shares again";
    case "INVALID_SHARE":
      return "pass one share exactly as `arbor init` printed it, and each share only once per ceremony";
    case "RATE_LIMITED":
      return "wait a minute, then retry";
    case "CONCURRENT_UPDATE":
      return "retry the command";
    case "ROOT_UNAVAILABLE":
    case "STORAGE_UNAVAILABLE":
    case "AUDIT_UNAVAILABLE":
      return "the server cannot reach a dependency; check its log and retry";
    case "INVALID_POLICY":
      return "run `arbor policy test` on the file first; the message names the line and the schema rule";
    case "AUDIT_PROOF_UNAVAILABLE":
      return "run `arbor audit checkpoint`, then ask for the proof again";
    case "AUDIT_EXPORT_PENDING":
      return "wait for the exporter to catch up (see arbor_audit_export_lag_records), or prune less";
    case "INTERNAL":
    case "STORED_KEY_CORRUPT":
      return context.requestId === undefined
        ? "check the server log"
        : `check the server log for request id ${context.requestId}`;
    default:
      return undefined;
  }
}
