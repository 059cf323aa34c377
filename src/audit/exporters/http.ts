import { readFile } from "node:fs/promises";

import { DeliveryError, type ExportRecord, type Sink } from "./types.ts";

export interface HttpSinkOptions {
  name: string;
  /** An http or https URL; the configuration validates it. */
  url: string;
  /** Extra request headers, such as a SIEM's own authorization scheme. */
  headers: Readonly<Record<string, string>>;
  /** File whose content (trailing line breaks removed) is sent as `Authorization: Bearer ...`. */
  bearerTokenFile: string | null;
  /** Limit for one request until the response headers arrive, in ms. */
  timeoutMs: number;
}

/**
 * POSTs each batch as one JSON document and counts it delivered on a 2xx response:
 *
 * ```json
 * {"records":[{"seq":1,"hash":"...","type":"key.created","record":{...}}]}
 * ```
 *
 * `record` is the stored canonical JSON inserted byte for byte, so SIEMs index its fields, and a
 * receiver can check `hash` by canonicalizing `record` again (RFC 8785 is deterministic) or by
 * cutting the bytes out of the raw body. `seq`, `hash` and `type` sit outside `record` so a
 * receiver can deduplicate without knowing the record's schema.
 *
 * Any other status fails the batch, and the runner retries it. 4xx statuses other than 408 and 429
 * count as `rejected`, because they usually need an operator (a wrong token or URL). Redirects
 * are not followed, so a batch and its token never go to an address that is not configured.
 * The token file is read for every request, so a rotated token takes effect without a restart.
 */
export class HttpSink implements Sink {
  readonly name: string;
  readonly #options: HttpSinkOptions;
  readonly #inFlight = new Set<AbortController>();
  #closed = false;

  constructor(options: HttpSinkOptions) {
    this.name = options.name;
    this.#options = options;
  }

  async deliver(batch: ExportRecord[]): Promise<void> {
    if (this.#closed)
      throw new DeliveryError("unavailable", `HTTP exporter ${this.name} is closed`);
    if (batch.length === 0) return;

    const headers: Record<string, string> = {
      ...this.#options.headers,
      "content-type": "application/json",
    };
    if (this.#options.bearerTokenFile !== null) {
      headers.authorization = `Bearer ${await readBearerToken(this.#options.bearerTokenFile)}`;
    }
    const response = await this.#post(encodeBatch(batch), headers);
    // The body is not needed; cancelling it releases the connection.
    await response.body?.cancel().catch(() => undefined);

    if (response.status >= 200 && response.status < 300) return;
    throw statusError(response, this.#options.url);
  }

  close(): Promise<void> {
    this.#closed = true;
    for (const controller of this.#inFlight) controller.abort(new Error("the exporter was closed"));
    return Promise.resolve();
  }

  async #post(body: string, headers: Record<string, string>): Promise<Response> {
    const { url, timeoutMs } = this.#options;
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new Error(`timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    this.#inFlight.add(controller);
    try {
      return await fetch(url, {
        method: "POST",
        headers,
        body,
        redirect: "manual",
        signal: controller.signal,
      });
    } catch (error) {
      const reason: unknown = controller.signal.aborted ? controller.signal.reason : error;
      throw new DeliveryError("unavailable", `POST ${shownUrl(url)} failed: ${describe(reason)}`, {
        cause: error,
      });
    } finally {
      clearTimeout(timer);
      this.#inFlight.delete(controller);
    }
  }
}

/** Builds the request body by concatenation, so each record's stored bytes stay unchanged. */
export function encodeBatch(batch: readonly ExportRecord[]): string {
  const entries = batch.map(
    (record) =>
      `{"seq":${record.seq},"hash":${JSON.stringify(record.hash)},` +
      `"type":${JSON.stringify(record.type)},"record":${record.json}}`,
  );
  return `{"records":[${entries.join(",")}]}`;
}

/**
 * Returns the URL as messages show it: without the query string, which some SIEMs use for an API key, and
 * without user information (which the configuration rejects anyway).
 */
function shownUrl(url: string | URL): string {
  const parsed = new URL(url);
  return `${parsed.origin}${parsed.pathname}${parsed.search === "" ? "" : "?…"}`;
}

function statusError(response: Response, rawUrl: string): DeliveryError {
  const { status } = response;
  const url = shownUrl(rawUrl);
  if (status >= 300 && status < 400) {
    return new DeliveryError(
      "rejected",
      `POST ${url} returned the redirect status ${status}, which is not followed: set the exporter's url to the final address`,
    );
  }
  if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
    return new DeliveryError(
      "rejected",
      `POST ${url} failed with status ${status}: check the exporter's url, token and headers`,
    );
  }
  return new DeliveryError("unavailable", `POST ${url} failed with status ${status}`, {
    retryAfterMs: parseRetryAfter(response.headers.get("retry-after")),
  });
}

/** Parses Retry-After as delay-seconds or an HTTP date (RFC 9110 section 10.2.3), in ms. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (value === null) return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

async function readBearerToken(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "read error";
    throw new DeliveryError(
      "unavailable",
      `failed to read the bearer token file ${path} (${code})`,
      { cause: error },
    );
  }
  const token = text.replace(/[\r\n]+$/, "");
  // Visible ASCII only: anything else could not travel in a header or would split it.
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new DeliveryError(
      "unavailable",
      `the bearer token file ${path} is empty or contains spaces, line breaks or non-ASCII characters`,
    );
  }
  return token;
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  // fetch reports network failures as "fetch failed" and keeps the reason in `cause`.
  const cause = error.cause;
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    return `${error.message} (${typeof code === "string" ? code : cause.message})`;
  }
  return error.message;
}
