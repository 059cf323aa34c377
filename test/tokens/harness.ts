import assert from "node:assert/strict";
import { createServer, type AddressInfo } from "node:net";

import { Registry } from "prom-client";

import { GroupCommitter } from "../../src/audit/group-commit.ts";
import { createSqlAuditWriter } from "../../src/audit/sql-writer.ts";
import { createEnvelopeService } from "../../src/envelope/service.ts";
import { createKeyTree } from "../../src/hierarchy/index.ts";
import { createOperatorTokenService, type SecretHashing } from "../../src/operators/index.ts";
import { createSealedRoot } from "../../src/root/index.ts";
import {
  allowAllAuthorizer,
  buildApp,
  createLogger,
  createMetrics,
  type ServerDeps,
} from "../../src/server/index.ts";
import {
  createTokenService,
  ObservedMaterialCache,
  restrictToOwnService,
  signRetireAfterMs,
  type SignatureVerifier,
  type TokenService,
  type TokenServiceOptions,
} from "../../src/tokens/index.ts";
import { FakeClock } from "../helpers/clock.ts";
import { dialects } from "../helpers/dialects.ts";
import {
  initialise,
  LogCapture,
  SwitchableAuditWriter,
  TEST_LIMITS,
  unseal,
  type ServerHarness,
} from "../server/harness.ts";

export interface TokenHarness extends ServerHarness {
  tokens: TokenService;
  rootToken: string;
  /** `http://127.0.0.1:<port>`: the listener and the external address are the same. */
  base: string;
}

export interface TokenHarnessOptions {
  tokenOptions?: TokenServiceOptions;
  secretHashing?: SecretHashing;
  verifySignature?: SignatureVerifier;
  /** Omit to get an initialised, unsealed server; false leaves it uninitialised. */
  unsealed?: boolean;
}

/**
 * Builds the app on real components, wired like the composition root (token service, own-service
 * key restriction, sign versions retired after the longest token lifetime plus a margin), and
 * listens on 127.0.0.1. The external address is the listener's, so issuer URLs resolve.
 */
export async function openTokenServer(options: TokenHarnessOptions = {}): Promise<TokenHarness> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const opened = await dialects[0]!.open();
  const { storage } = opened;
  const clock = new FakeClock(Date.now());
  const logs = new LogCapture();
  const logger = createLogger({ level: "debug", destination: logs });
  const metrics = createMetrics(new Registry());

  const root = await createSealedRoot({
    store: storage.sealedRoot,
    clock,
    metrics: metrics.rootMetrics,
  });
  const cache = new ObservedMaterialCache({ clock, maxEntries: 100, ttlMs: 60_000 });
  const keyTree = createKeyTree({
    storage,
    root,
    clock,
    cache,
    logger,
    signRetireAfterMs: signRetireAfterMs(options.tokenOptions),
  });
  const audit = new SwitchableAuditWriter(createSqlAuditWriter(new GroupCommitter(storage)));
  const tokens = createTokenService({
    storage,
    keyTree,
    clock,
    audit,
    metrics,
    externalAddress: base,
    materialCache: cache,
    ...(options.tokenOptions === undefined ? {} : { options: options.tokenOptions }),
    ...(options.secretHashing === undefined ? {} : { secretHashing: options.secretHashing }),
    ...(options.verifySignature === undefined ? {} : { verifySignature: options.verifySignature }),
  });

  const scopedKeyTree = restrictToOwnService(keyTree);
  const deps: ServerDeps = {
    keyTree: scopedKeyTree,
    root,
    envelope: createEnvelopeService({ keyTree: scopedKeyTree }),
    operators: createOperatorTokenService({ storage, clock }),
    audit,
    authorizer: allowAllAuthorizer,
    metrics,
    clock,
    logger,
    storage,
    limits: TEST_LIMITS,
    externalAddress: base,
    tokens,
  };
  const app = await buildApp(deps);
  await app.listen({ host: "127.0.0.1", port });

  let rootToken = "";
  if (options.unsealed !== false) {
    const initialised = await initialise(app);
    await unseal(app, initialised.shares);
    rootToken = initialised.rootToken;
  }
  return {
    app,
    deps,
    storage,
    root,
    audit,
    logs,
    clock,
    tokens,
    rootToken,
    base,
    async close() {
      await app.close();
      root.seal();
      await opened.close();
    },
  };
}

/**
 * Asks the kernel for a free port. The port is released before the server binds it, which is a
 * small race, but the issuer URLs must be known before the app is built.
 */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Calls the JSON API with the root token (or `token`) and returns the status and body. */
export async function api<T = Record<string, unknown>>(
  harness: TokenHarness,
  method: string,
  url: string,
  body?: unknown,
  token = harness.rootToken,
): Promise<{ status: number; body: T; headers: Headers }> {
  const response = await fetch(`${harness.base}${url}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return {
    status: response.status,
    body: (text === "" ? {} : JSON.parse(text)) as T,
    headers: response.headers,
  };
}

/** Posts a form to an OAuth endpoint and returns the status, body and headers. */
export async function postForm<T = Record<string, unknown>>(
  harness: TokenHarness,
  path: string,
  form: string | URLSearchParams,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: T; headers: Headers }> {
  const response = await fetch(`${harness.base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
    body: typeof form === "string" ? form : form.toString(),
  });
  const text = await response.text();
  return {
    status: response.status,
    body: (text === "" ? {} : JSON.parse(text)) as T,
    headers: response.headers,
  };
}

export function basic(clientId: string, secret: string): Record<string, string> {
  const encoded = Buffer.from(
    `${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`,
  ).toString("base64");
  return { authorization: `Basic ${encoded}` };
}

export interface CreatedService {
  id: string;
  clientSecret: string;
  clientSecretId: string;
  issuer: string;
  signKeyId: string;
}

/** Creates the keys a path needs (masters, then the service's sign key), ignoring existing ones. */
export async function createKeys(
  harness: TokenHarness,
  paths: readonly string[],
  algorithm?: "EdDSA" | "ES256",
): Promise<void> {
  for (const path of paths) {
    const body = path.endsWith(":sign") && algorithm !== undefined ? { path, algorithm } : { path };
    const created = await api(harness, "POST", "/v1/keys", body);
    assert.ok(
      created.status === 201 || created.status === 409,
      `creating ${path}: ${JSON.stringify(created.body)}`,
    );
  }
}

/** Creates a service principal through the API and returns its id, secret and issuer. */
export async function createService(
  harness: TokenHarness,
  input: Record<string, unknown>,
): Promise<CreatedService> {
  const created = await api<CreatedService>(harness, "POST", "/v1/services", input);
  assert.equal(created.status, 201, JSON.stringify(created.body));
  return created.body;
}

/** Obtains a token with client_secret_basic and returns the raw token response. */
export async function obtainToken(
  harness: TokenHarness,
  service: Pick<CreatedService, "id" | "clientSecret">,
  extra: Record<string, string> = {},
): Promise<{ access_token: string; expires_in: number; scope?: string; token_type: string }> {
  const response = await postForm<{
    access_token: string;
    expires_in: number;
    scope?: string;
    token_type: string;
  }>(
    harness,
    "/v1/oauth/token",
    new URLSearchParams({ grant_type: "client_credentials", ...extra }),
    basic(service.id, service.clientSecret),
  );
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body;
}

/** Introspects a token with the root operator token. */
export async function introspect(
  harness: TokenHarness,
  token: string,
): Promise<Record<string, unknown>> {
  const response = await postForm(harness, "/v1/oauth/introspect", new URLSearchParams({ token }), {
    authorization: `Bearer ${harness.rootToken}`,
  });
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body;
}
