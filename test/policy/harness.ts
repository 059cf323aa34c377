import assert from "node:assert/strict";

import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { Registry } from "prom-client";

import { GroupCommitter } from "../../src/audit/group-commit.ts";
import { auditKeyChanges } from "../../src/audit/key-events.ts";
import { createSqlAuditWriter } from "../../src/audit/sql-writer.ts";
import { createEnvelopeService } from "../../src/envelope/service.ts";
import { createKeyTree } from "../../src/hierarchy/index.ts";
import { createOperatorTokenService } from "../../src/operators/index.ts";
import { createPolicyComponents, type PolicyComponents } from "../../src/policy/index.ts";
import { createSealedRoot } from "../../src/root/index.ts";
import {
  buildApp,
  createLogger,
  createMetrics,
  type AuthorizationRequest,
  type AuthorizationDecision,
  type ServerDeps,
} from "../../src/server/index.ts";
import type { Storage } from "../../src/storage/index.ts";
import {
  createTokenService,
  ObservedMaterialCache,
  restrictToOwnService,
  signRetireAfterMs,
} from "../../src/tokens/index.ts";
import { FakeClock } from "../helpers/clock.ts";
import { dialects } from "../helpers/dialects.ts";
import { initialise, LogCapture, TEST_LIMITS, unseal } from "../server/harness.ts";

/** One decision the Cedar authorizer made, as the recorder saw it. */
export interface RecordedDecision {
  requestId: string;
  action: string;
  target: AuthorizationRequest["target"];
  decision: AuthorizationDecision;
}

export interface PolicyHarness {
  app: FastifyInstance;
  deps: ServerDeps;
  storage: Storage;
  policies: PolicyComponents;
  clock: FakeClock;
  logs: LogCapture;
  rootToken: string;
  /** Every decision of the Cedar authorizer, in order. */
  decisions: RecordedDecision[];
  call(
    method: "GET" | "POST" | "PUT" | "DELETE",
    url: string,
    options?: { token?: string | null; body?: unknown; headers?: Record<string, string> },
  ): Promise<LightMyRequestResponse>;
  /** Posts a form to an OAuth endpoint. */
  form(
    url: string,
    fields: Record<string, string>,
    headers?: Record<string, string>,
  ): Promise<LightMyRequestResponse>;
  /** Audit events of one type, read from the durable log. */
  events(type: string): Promise<
    Array<{
      outcome: string;
      principal: string;
      details: Record<string, unknown>;
      keyId: string | null;
      credentialId: string | null;
    }>
  >;
  close(): Promise<void>;
}

/**
 * Builds the app as the composition root does, with the Cedar authorizer and the key tree that
 * requires a decision on every look-up, on real components (SQLite, the sealed root, the token
 * service, the chained audit writer), initialised and unsealed. The authorizer is wrapped in a
 * recorder so tests can see every decision; the recorder changes nothing.
 */
export async function openPolicyServer(
  options: { decisionCacheTtlMs?: number } = {},
): Promise<PolicyHarness> {
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
  const audit = createSqlAuditWriter(new GroupCommitter(storage));
  const keyTree = createKeyTree({
    storage,
    root,
    clock,
    cache,
    logger,
    signRetireAfterMs: signRetireAfterMs(),
    onChange: auditKeyChanges(audit),
  });
  const externalAddress = "https://arbor.test";
  const tokens = createTokenService({
    storage,
    keyTree,
    clock,
    audit,
    metrics,
    externalAddress,
    materialCache: cache,
  });
  const policies = await createPolicyComponents({
    storage,
    clock,
    audit,
    metrics,
    logger,
    keyTree: restrictToOwnService(keyTree),
    ...(options.decisionCacheTtlMs === undefined
      ? {}
      : { decisionCacheTtlMs: options.decisionCacheTtlMs }),
  });

  const decisions: RecordedDecision[] = [];
  const deps: ServerDeps = {
    keyTree: policies.keyTree,
    root,
    envelope: createEnvelopeService({ keyTree: policies.keyTree }),
    operators: createOperatorTokenService({ storage, clock }),
    audit,
    authorizer: {
      async authorize(input) {
        const decision = await policies.authorizer.authorize(input);
        decisions.push({
          requestId: input.request.id,
          action: input.action,
          target: input.target,
          decision,
        });
        return decision;
      },
    },
    policies,
    metrics,
    clock,
    logger,
    storage,
    limits: TEST_LIMITS,
    externalAddress,
    tokens,
  };
  const app = await buildApp(deps);
  const { shares, rootToken } = await initialise(app);
  await unseal(app, shares);

  return {
    app,
    deps,
    storage,
    policies,
    clock,
    logs,
    rootToken,
    decisions,
    call(method, url, callOptions = {}) {
      const token = callOptions.token === undefined ? rootToken : callOptions.token;
      return app.inject({
        method,
        url,
        headers: {
          ...(token === null ? {} : { authorization: `Bearer ${token}` }),
          ...callOptions.headers,
        },
        ...(callOptions.body === undefined ? {} : { payload: callOptions.body as object }),
      });
    },
    form(url, fields, headers = {}) {
      return app.inject({
        method: "POST",
        url,
        headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
        payload: new URLSearchParams(fields).toString(),
      });
    },
    async events(type) {
      const rows = await storage.db
        .selectFrom("audit_events")
        .select(["outcome", "principal_id", "details", "key_id", "credential_id"])
        .where("type", "=", type)
        .orderBy("seq")
        .execute();
      return rows.map((row) => ({
        outcome: row.outcome,
        principal: row.principal_id,
        details: JSON.parse(row.details) as Record<string, unknown>,
        keyId: row.key_id,
        credentialId: row.credential_id,
      }));
    },
    async close() {
      await app.close();
      root.seal();
      await opened.close();
    },
  };
}

/** Creates each key path in order with the root token. */
export async function createKeys(harness: PolicyHarness, paths: readonly string[]): Promise<void> {
  for (const path of paths) {
    const response = await harness.call("POST", "/v1/keys", { body: { path } });
    assert.equal(response.statusCode, 201, `${path}: ${response.body}`);
  }
}

/** Creates an operator token with the root token and returns its id and secret. */
export async function operatorToken(
  harness: PolicyHarness,
  scope: { environment?: string | null; tenant?: string | null; readOnly?: boolean },
): Promise<{ id: string; token: string }> {
  const response = await harness.call("POST", "/v1/operator/tokens", {
    body: { name: "policy-test", ttl: "24h", environment: null, tenant: null, ...scope },
  });
  assert.equal(response.statusCode, 201, response.body);
  return response.json<{ id: string; token: string }>();
}

export function keyUrl(path: string, suffix = ""): string {
  return `/v1/keys/${encodeURIComponent(path)}${suffix}`;
}

/** The keys most tests use: two tenants in prod, one in stage, and environment-level keys. */
export const HIERARCHY = [
  "prod",
  "prod/acme",
  "prod/globex",
  "prod/acme/billing:encrypt",
  "prod/acme/billing:sign",
  "prod/acme/ledger:encrypt",
  "prod/globex/billing:encrypt",
  "prod/ops:encrypt",
  "stage",
  "stage/acme",
  "stage/acme/billing:encrypt",
] as const;
