import assert from "node:assert/strict";
import { Writable } from "node:stream";

import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { Registry } from "prom-client";

import { GroupCommitter } from "../../src/audit/group-commit.ts";
import type { Transaction } from "kysely";

import { createAuditKey } from "../../src/audit/audit-key.ts";
import { createCheckpointer } from "../../src/audit/checkpointer.ts";
import { checkCompleteness } from "../../src/audit/completeness.ts";
import { auditKeyChanges } from "../../src/audit/key-events.ts";
import { auditStateChanges } from "../../src/audit/state-events.ts";
import { createAuditLogStore } from "../../src/audit/log-store.ts";
import { createRetention } from "../../src/audit/retention.ts";
import {
  auditUnavailable,
  createSqlAuditWriter,
  type SqlAuditWriter,
} from "../../src/audit/sql-writer.ts";
import type { AuditEvent } from "../../src/audit/types.ts";
import type { Database } from "../../src/storage/schema.ts";
import { createEnvelopeService } from "../../src/envelope/service.ts";
import { createKeyTree, MaterialCache } from "../../src/hierarchy/index.ts";
import { createOperatorTokenService } from "../../src/operators/index.ts";
import { createSealedRoot, type SealedRootProvider } from "../../src/root/index.ts";
import {
  allowAllAuthorizer,
  buildApp,
  createLogger,
  createMetrics,
  type ApplyHierarchy,
  type Authorizer,
  type ServerDeps,
  type ServerLimits,
} from "../../src/server/index.ts";
import type { Storage } from "../../src/storage/index.ts";
import { FakeClock } from "../helpers/clock.ts";
import { dialects } from "../helpers/dialects.ts";

/** Collects every log line the server writes, so tests can search it for secrets. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];

  override _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    this.lines.push(
      ...chunk
        .toString("utf8")
        .split("\n")
        .filter((line) => line !== ""),
    );
    callback();
  }

  get text(): string {
    return this.lines.join("\n");
  }

  records(): Array<Record<string, unknown>> {
    return this.lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  }
}

/**
 * The real durable audit writer with a switch that makes every write fail like an unavailable
 * store, and a record of the events that were written.
 */
export class SwitchableAuditWriter implements SqlAuditWriter {
  readonly events: AuditEvent[] = [];
  failing = false;
  readonly #inner: SqlAuditWriter;

  constructor(inner: SqlAuditWriter) {
    this.#inner = inner;
  }

  async write(event: AuditEvent): Promise<void> {
    if (this.failing) throw auditUnavailable(new Error("audit store switched off by the test"));
    await this.#inner.write(event);
    this.events.push(event);
  }

  /** Events of state changes, written in the change's own transaction (key changes). */
  async writeInTransaction(trx: Transaction<Database>, event: AuditEvent): Promise<void> {
    if (this.failing) throw auditUnavailable(new Error("audit store switched off by the test"));
    await this.#inner.writeInTransaction(trx, event);
    // Recorded after the transaction commits would be exact; a rolled-back change is rare in
    // these tests and its record disappears from the table, which is what tests read.
    this.events.push(event);
  }

  ofType(type: AuditEvent["type"]): AuditEvent[] {
    return this.events.filter((event) => event.type === type);
  }
}

export interface ServerHarness {
  app: FastifyInstance;
  deps: ServerDeps;
  storage: Storage;
  root: SealedRootProvider;
  audit: SwitchableAuditWriter;
  logs: LogCapture;
  clock: FakeClock;
  close(): Promise<void>;
}

export interface HarnessOptions {
  limits?: Partial<ServerLimits>;
  authorizer?: Authorizer;
  applyHierarchy?: ApplyHierarchy;
}

export const TEST_LIMITS: ServerLimits = {
  maxPayloadBytes: 4096,
  maxBodyBytes: 16_384,
  unsealAttemptsPerMinute: 100,
};

/**
 * Builds the app on real components: SQLite storage, the sealed root, the key tree, the envelope
 * and operator token services and the SQL audit writer. The server starts uninitialised.
 */
export async function openServer(options: HarnessOptions = {}): Promise<ServerHarness> {
  const opened = await dialects[0]!.open();
  const { storage } = opened;
  const clock = new FakeClock();
  const logs = new LogCapture();
  const logger = createLogger({ level: "debug", destination: logs });
  const metrics = createMetrics(new Registry());

  const root = await createSealedRoot({
    store: storage.sealedRoot,
    clock,
    metrics: metrics.rootMetrics,
  });
  const cache = new MaterialCache({ clock, maxEntries: 100, ttlMs: 60_000 });
  const auditStore = createAuditLogStore(storage.db);
  const checkpointer = createCheckpointer({ storage, store: auditStore, root, clock, logger });
  const audit = new SwitchableAuditWriter(createSqlAuditWriter(new GroupCommitter(storage)));
  const keyTree = createKeyTree({
    storage,
    root,
    clock,
    cache,
    logger,
    onChange: auditKeyChanges(audit),
  });
  storage.outbox.observe(auditStateChanges(audit));
  const retention = createRetention({ storage, store: auditStore, clock, exporters: () => [] });

  const deps: ServerDeps = {
    keyTree,
    root,
    envelope: createEnvelopeService({ keyTree }),
    operators: createOperatorTokenService({ storage, clock }),
    audit,
    auditKey: createAuditKey({ storage, root, clock }),
    auditLog: {
      store: auditStore,
      checkpointer,
      completeness: () => checkCompleteness(storage.db),
      prune: (through) => retention.prune(through),
    },
    authorizer: options.authorizer ?? allowAllAuthorizer,
    metrics,
    clock,
    logger,
    storage,
    limits: { ...TEST_LIMITS, ...options.limits },
    externalAddress: "https://arbor.test",
    applyHierarchy: options.applyHierarchy,
  };
  const app = await buildApp(deps);

  return {
    app,
    deps,
    storage,
    root,
    audit,
    logs,
    clock,
    async close() {
      await app.close();
      root.seal();
      await opened.close();
    },
  };
}

export interface Initialised {
  shares: string[];
  rootToken: string;
}

/** Initialises with 5 shares and threshold 3 through the API. */
export async function initialise(app: FastifyInstance): Promise<Initialised> {
  const response = await app.inject({
    method: "POST",
    url: "/v1/sys/init",
    payload: { shares: 5, threshold: 3 },
  });
  assert.equal(response.statusCode, 200, response.body);
  const body = response.json<{ shares: string[]; rootToken: string }>();
  return { shares: body.shares, rootToken: body.rootToken };
}

/** Runs the unseal ceremony through the API with the first `count` shares. */
export async function unseal(app: FastifyInstance, shares: string[], count = 3): Promise<void> {
  const begun = await app.inject({ method: "POST", url: "/v1/sys/unseal", payload: {} });
  assert.equal(begun.statusCode, 200, begun.body);
  const { nonce } = begun.json<{ nonce: string }>();
  for (const share of shares.slice(0, count)) {
    const submitted = await app.inject({
      method: "POST",
      url: "/v1/sys/unseal",
      payload: { nonce, share },
    });
    assert.equal(submitted.statusCode, 200, submitted.body);
  }
}

/** Opens an initialised, unsealed server and returns it with its root token. */
export async function openUnsealedServer(
  options: HarnessOptions = {},
): Promise<ServerHarness & Initialised> {
  const harness = await openServer(options);
  const initialised = await initialise(harness.app);
  await unseal(harness.app, initialised.shares);
  return { ...harness, ...initialised };
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

/** Asserts an error response: status, code, the body shape and the echoed request id. */
export function assertError(
  response: LightMyRequestResponse,
  status: number,
  code: string,
  parameter?: string,
): { code: string; message: string; requestId: string; parameter?: string; value?: unknown } {
  assert.equal(response.statusCode, status, `expected ${status} ${code}, got ${response.body}`);
  const body = response.json<{
    error: { code: string; message: string; requestId: string; parameter?: string };
  }>();
  assert.equal(body.error.code, code, response.body);
  assert.equal(typeof body.error.message, "string");
  assert.ok(body.error.message.length > 0, "the message must not be empty");
  assert.equal(body.error.requestId, response.headers["x-request-id"]);
  if (parameter !== undefined) assert.equal(body.error.parameter, parameter, response.body);
  return body.error;
}
