import { CliError, hintFor, usageError } from "./errors.ts";

export const DEFAULT_ADDR = "http://127.0.0.1:8200";

/** How long one HTTP request may take before the CLI gives up, in milliseconds. */
export const REQUEST_TIMEOUT_MS = 60_000;

/** Server address and operator token for the CLI's requests. */
export interface ClientSettings {
  /** Base URL without a trailing slash, such as `http://127.0.0.1:8200`. */
  addr: string;
  token: string | undefined;
}

/**
 * Resolves the address and token: a flag wins over `ARBOR_ADDR` / `ARBOR_TOKEN`, and an empty
 * variable counts as unset. Throws a usage error for an address that is not an http(s) URL.
 */
export function resolveClientSettings(
  flags: { addr?: string | undefined; token?: string | undefined },
  env: NodeJS.ProcessEnv,
): ClientSettings {
  const addr = flags.addr ?? nonEmpty(env.ARBOR_ADDR) ?? DEFAULT_ADDR;
  const source = flags.addr !== undefined ? "--addr" : "ARBOR_ADDR";
  return { addr: normalizeAddress(addr, source), token: flags.token ?? nonEmpty(env.ARBOR_TOKEN) };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

function normalizeAddress(addr: string, source: string): string {
  const hint = "pass the server's base URL, such as http://127.0.0.1:8200";
  if (!URL.canParse(addr))
    throw usageError(`invalid ${source} ${JSON.stringify(addr)}: not a URL`, hint);

  const url = new URL(addr);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw usageError(
      `invalid ${source} ${JSON.stringify(addr)}: the scheme must be http or https`,
      hint,
    );
  }
  if (url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") {
    throw usageError(
      `invalid ${source} ${JSON.stringify(addr)}: it must not contain credentials, a query or a fragment`,
      hint,
    );
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

/** Builds the route of a key: `{key}` is a path or id, URL-encoded as one segment. */
export function keyRoute(key: string, suffix = ""): string {
  return `/v1/keys/${encodeURIComponent(key)}${suffix}`;
}

export interface RequestOptions {
  /** JSON body; POST and PUT send `{}` when it is omitted, as the server expects a JSON object. */
  body?: unknown;
  /** Query parameters; undefined values are left out. */
  query?: Record<string, string | undefined>;
}

/** The server's error body: `{ error: { code, message, requestId, parameter?, value? } }`. */
interface ErrorBody {
  error: { code: string; message: string; requestId?: string };
}

/**
 * A small JSON client for Arbor's HTTP API on the global `fetch`. Every failure becomes a
 * CliError. Server errors keep their stable code and gain a hint, and transport failures name
 * the address that could not be reached.
 */
export class ArborClient {
  readonly address: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;

  constructor(settings: ClientSettings, options: { timeoutMs?: number } = {}) {
    this.address = settings.addr;
    this.#token = settings.token;
    this.#timeoutMs = options.timeoutMs ?? REQUEST_TIMEOUT_MS;
  }

  get hasToken(): boolean {
    return this.#token !== undefined;
  }

  get<T>(path: string, query?: Record<string, string | undefined>): Promise<T> {
    return this.request<T>("GET", path, query === undefined ? {} : { query });
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>("POST", path, { body: body ?? {} });
  }

  put<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>("PUT", path, { body: body ?? {} });
  }

  delete<T>(path: string): Promise<T> {
    return this.request<T>("DELETE", path);
  }

  /** Sends one request and returns the parsed JSON body of a 2xx response. */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const url = new URL(this.address + path);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, value);
    }
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`;
    if (options.body !== undefined) headers["content-type"] = "application/json";

    let response: Response;
    let text: string;
    try {
      response = await fetch(url, {
        method,
        headers,
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      text = await response.text();
    } catch (error) {
      throw this.#transportError(error);
    }

    const body = parseJson(text);
    if (response.ok) {
      if (body === undefined) {
        throw new CliError(
          "INVALID_RESPONSE",
          `${method} ${path} at ${this.address} returned HTTP ${response.status} without a JSON body`,
          { hint: "check that ARBOR_ADDR or --addr points at an Arbor server" },
        );
      }
      return body as T;
    }
    throw this.#serverError(response.status, body);
  }

  #serverError(status: number, body: unknown): CliError {
    if (!isErrorBody(body)) {
      return new CliError(
        "INVALID_RESPONSE",
        `Arbor at ${this.address} returned HTTP ${status} without an error body`,
        {
          hint: "check that ARBOR_ADDR or --addr points at an Arbor server, not a proxy or another service",
        },
      );
    }
    const { code, message, requestId } = body.error;
    const hint = hintFor(code, {
      tokenSent: this.hasToken,
      ...(requestId === undefined ? {} : { requestId }),
    });
    return new CliError(code, message, {
      ...(hint === undefined ? {} : { hint }),
      ...(requestId === undefined ? {} : { requestId }),
    });
  }

  #transportError(error: unknown): CliError {
    if (error instanceof Error && error.name === "TimeoutError") {
      return new CliError(
        "TIMED_OUT",
        `request to Arbor at ${this.address} timed out after ${this.#timeoutMs / 1000} s`,
        { hint: "check the server's log and load, then retry", cause: error },
      );
    }

    const code = errorCodeOf(error);
    if (code !== undefined && TLS_ERROR_CODES.has(code)) {
      return new CliError(
        "CONNECTION_FAILED",
        `TLS connection to ${this.address} failed (${code})`,
        {
          hint: "check the server certificate; add a private CA with NODE_EXTRA_CA_CERTS",
          cause: error,
        },
      );
    }
    const reason =
      code === "ECONNREFUSED"
        ? "connection refused"
        : code === "ENOTFOUND" || code === "EAI_AGAIN"
          ? "host name not found"
          : (code ?? (error instanceof Error ? error.message : String(error)));
    return new CliError("CONNECTION_FAILED", `cannot reach Arbor at ${this.address} (${reason})`, {
      hint: "is `arbor dev` or `arbor server` running? Set ARBOR_ADDR or pass --addr if it listens elsewhere",
      cause: error,
    });
  }
}

const TLS_ERROR_CODES: ReadonlySet<string> = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "ERR_SSL_WRONG_VERSION_NUMBER",
]);

/** Reads the system error code that undici puts on `fetch failed` errors as their cause. */
function errorCodeOf(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    const code = (current as NodeJS.ErrnoException).code;
    if (typeof code === "string" && code !== "UND_ERR_SOCKET") return code;
    current = current.cause;
  }
  return undefined;
}

function parseJson(text: string): unknown {
  if (text === "") return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isErrorBody(body: unknown): body is ErrorBody {
  if (typeof body !== "object" || body === null) return false;
  const error = (body as { error?: unknown }).error;
  return (
    typeof error === "object" &&
    error !== null &&
    typeof (error as { code?: unknown }).code === "string" &&
    typeof (error as { message?: unknown }).message === "string"
  );
}
