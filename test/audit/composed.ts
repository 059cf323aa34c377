import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { loadConfig } from "../../src/config/index.ts";
import { startArbor, type RunningArbor } from "../../src/server/compose.ts";
import { createLogger } from "../../src/server/logger.ts";
import { REQUEST_ID_HEADER } from "../../src/server/plugins/request-id.ts";
import type { Storage } from "../../src/storage/index.ts";
import { LogCapture } from "../server/harness.ts";

/** A response body as parsed from JSON; the tests check its fields one by one. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped on purpose, see above
export type ResponseBody = any;

/** One HTTP exchange: the status, the parsed JSON body (or the text) and the echoed request id. */
export interface HttpResult<T = ResponseBody> {
  status: number;
  body: T;
  text: string;
  requestId: string;
}

export interface CallOptions {
  /** The bearer token; the root token by default, null for none. */
  token?: string | null;
  headers?: Record<string, string>;
}

/**
 * An Arbor server built by the composition root (`startArbor`), as `arbor server` runs it: SQLite
 * in a temporary directory, the sealed root, every route, the checkpointer and the audit HMAC key.
 * Its pino log goes to `logs`.
 */
export interface ComposedServer {
  arbor: RunningArbor;
  address: string;
  storage: Storage;
  logs: LogCapture;
  /** Empty until initialised. */
  rootToken: string;
  shares: string[];
  call<T = ResponseBody>(
    method: string,
    path: string,
    body?: unknown,
    options?: CallOptions,
  ): Promise<HttpResult<T>>;
  /** Posts an `application/x-www-form-urlencoded` body, as the OAuth endpoints expect. */
  form<T = ResponseBody>(
    path: string,
    fields: Record<string, string>,
    headers?: Record<string, string>,
  ): Promise<HttpResult<T>>;
  seal(): Promise<void>;
  /** Runs the unseal ceremony with the first `threshold` shares. */
  unseal(): Promise<void>;
  close(): Promise<void>;
}

const SHARES = 5;
const THRESHOLD = 3;

/** Starts a composed server on 127.0.0.1, initialised and unsealed unless `initialise` is false. */
export async function openComposedServer(
  options: { initialise?: boolean; configYaml?: (dir: string) => string } = {},
): Promise<ComposedServer> {
  const dir = mkdtempSync(join(tmpdir(), "arbor-audit-"));
  const logs = new LogCapture();
  // The tests seal and unseal many times; the default of 10 unseal requests a minute is too few.
  const file = join(dir, "arbor.yaml");
  writeFileSync(
    file,
    `limits:\n  unseal_attempts_per_minute: 1000\n${options.configYaml?.(dir) ?? ""}`,
  );
  const config = await loadConfig({
    file,
    env: {},
    flags: { storagePath: join(dir, "arbor.db"), listen: "127.0.0.1:0" },
  });
  const arbor = await startArbor(config, {
    logger: createLogger({ level: "debug", destination: logs }),
  });

  async function exchange<T>(path: string, init: RequestInit): Promise<HttpResult<T>> {
    const response = await fetch(`${arbor.address}${path}`, init);
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // Not JSON (the metrics route); the text is the body.
    }
    return {
      status: response.status,
      body: body as T,
      text,
      requestId: response.headers.get(REQUEST_ID_HEADER) ?? "",
    };
  }

  const server: ComposedServer = {
    arbor,
    address: arbor.address,
    storage: arbor.deps.storage,
    logs,
    rootToken: "",
    shares: [],
    call(method, path, body, callOptions = {}) {
      const token = callOptions.token === undefined ? server.rootToken : callOptions.token;
      return exchange(path, {
        method,
        headers: {
          ...(body === undefined ? {} : { "content-type": "application/json" }),
          ...(token === null || token === "" ? {} : { authorization: `Bearer ${token}` }),
          ...callOptions.headers,
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    },
    form(path, fields, headers = {}) {
      return exchange(path, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
        body: new URLSearchParams(fields).toString(),
      });
    },
    async seal() {
      const sealed = await server.call("POST", "/v1/sys/seal", {});
      assert.equal(sealed.status, 200, sealed.text);
    },
    async unseal() {
      const begun = await server.call("POST", "/v1/sys/unseal", {}, { token: null });
      assert.equal(begun.status, 200, begun.text);
      for (const share of server.shares.slice(0, THRESHOLD)) {
        const step = await server.call(
          "POST",
          "/v1/sys/unseal",
          { nonce: begun.body.nonce, share },
          { token: null },
        );
        assert.equal(step.status, 200, step.text);
      }
    },
    async close() {
      try {
        await arbor.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };

  if (options.initialise !== false) {
    const init = await server.call<{ shares: string[]; rootToken: string }>(
      "POST",
      "/v1/sys/init",
      { shares: SHARES, threshold: THRESHOLD },
      { token: null },
    );
    assert.equal(init.status, 200, init.text);
    server.shares = init.body.shares;
    server.rootToken = init.body.rootToken;
    await server.unseal();
  }
  return server;
}

/** Encodes a key path for a `{key}` path parameter. */
export function keyParam(path: string): string {
  return encodeURIComponent(path);
}

/** HTTP Basic credentials for client_secret_basic (RFC 6749 section 2.3.1). */
export function basicAuth(clientId: string, secret: string): Record<string, string> {
  const encoded = Buffer.from(
    `${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`,
  ).toString("base64");
  return { authorization: `Basic ${encoded}` };
}
