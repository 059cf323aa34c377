import type { FastifyInstance } from "fastify";

import { buildProof, traceSubject } from "../../audit/trace.ts";
import { ArborError, invalidArgument } from "../../errors/index.ts";
import { emptyBodySchema, withErrors } from "../schemas.ts";
import type { RouteContext } from "./context.ts";

const MAX_PAGE = 5_000;
const DEFAULT_PAGE = 500;

// Query strings arrive as text and the server's validator does not coerce types, so the numbers
// of `/v1/audit/records` are declared as digit strings and converted in the handler.
const SEQ_TEXT = { type: "string", pattern: "^(0|[1-9][0-9]{0,14})$" } as const;
const PAGE_TEXT = { type: "string", pattern: "^[1-9][0-9]{0,5}$" } as const;

const storedRecordSchema = {
  type: "object",
  required: ["seq", "prevHash", "hash", "record"],
  properties: {
    seq: { type: "integer" },
    prevHash: { type: ["string", "null"] },
    hash: { type: ["string", "null"] },
    record: { type: ["string", "null"] },
    type: { type: "string" },
    outcome: { type: "string" },
    at: { type: "integer" },
    principalType: { type: "string" },
    principalId: { type: "string" },
    keyId: { type: ["string", "null"] },
    keyVersion: { type: ["integer", "null"] },
    credentialId: { type: ["string", "null"] },
    sourceAddress: { type: ["string", "null"] },
    requestId: { type: ["string", "null"] },
    errorCode: { type: ["string", "null"] },
    chain: { type: "string" },
    details: { type: "string" },
  },
} as const;

const subjectParams = {
  type: "object",
  required: ["id"],
  additionalProperties: false,
  properties: { id: { type: "string", minLength: 1, maxLength: 256 } },
} as const;

const nullableString = { type: ["string", "null"] } as const;
const nullableInteger = { type: ["integer", "null"] } as const;

const traceSchema = {
  type: "object",
  required: ["subject", "steps", "uses"],
  properties: {
    subject: { type: "string" },
    steps: {
      type: "array",
      items: {
        type: "object",
        required: ["ref", "kind", "seq"],
        properties: {
          ref: { type: "string" },
          kind: { type: "string", enum: ["root", "key", "credential"] },
          seq: nullableInteger,
          type: nullableString,
          at: nullableInteger,
          principal: nullableString,
          path: nullableString,
          note: nullableString,
        },
      },
    },
    uses: {
      type: "array",
      items: {
        type: "object",
        properties: {
          seq: { type: "integer" },
          type: { type: "string" },
          outcome: { type: "string" },
          at: { type: "integer" },
        },
      },
    },
  },
} as const;

const proofSchema = {
  type: "object",
  required: ["v", "kind", "subject", "checkpoint", "entries"],
  properties: {
    v: { type: "integer" },
    kind: { type: "string" },
    subject: { type: "string" },
    // The signed checkpoint is passed through exactly as stored, so its body keeps every field.
    checkpoint: { type: "object", additionalProperties: true },
    entries: {
      type: "array",
      items: {
        type: "object",
        required: ["record", "leafIndex", "inclusion"],
        properties: {
          record: { type: "string" },
          leafIndex: { type: "integer" },
          inclusion: { type: "array", items: { type: "string" } },
        },
      },
    },
  },
} as const;

const completenessSchema = {
  type: "object",
  required: ["issuances", "issuanceRecords", "missingRecords", "unmatchedRecords", "complete"],
  properties: {
    issuances: { type: "integer" },
    issuanceRecords: { type: "integer" },
    missingRecords: { type: "array", items: { type: "string" } },
    unmatchedRecords: { type: "array", items: { type: "string" } },
    prunedBefore: nullableInteger,
    complete: { type: "boolean" },
  },
} as const;

/**
 * The audit log, read-only: raw chained records (for `arbor audit tail` and for verifying on the
 * client, which trusts only the signed checkpoints), checkpoints, the checkpoint public key,
 * traces, proofs and the completeness check. Signing a checkpoint on demand is the one write.
 */
export function registerAuditRoutes(app: FastifyInstance, { deps, audit }: RouteContext): void {
  const log = deps.auditLog;
  if (log === undefined) return;

  app.get<{ Querystring: { after?: string; limit?: string } }>(
    "/v1/audit/records",
    {
      schema: {
        summary: `Lists chained audit records after a sequence number (after, default 0), oldest first, at most limit (1 to ${MAX_PAGE}, default ${DEFAULT_PAGE})`,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: { after: SEQ_TEXT, limit: PAGE_TEXT },
        },
        response: withErrors({
          200: {
            type: "object",
            required: ["records", "next"],
            properties: {
              records: { type: "array", items: storedRecordSchema },
              next: { type: "integer" },
            },
          },
        }),
      },
      config: { action: "audit.read", resource: "audit_log", auditEvent: null },
    },
    async (request) => {
      const after = Number(request.query.after ?? 0);
      const limit = Number(request.query.limit ?? DEFAULT_PAGE);
      if (limit > MAX_PAGE) {
        throw invalidArgument("limit", request.query.limit, `expected 1 to ${MAX_PAGE}`);
      }
      const records = await log.store.records(after, limit);
      return { records, next: records.at(-1)?.seq ?? after };
    },
  );

  app.get(
    "/v1/audit/checkpoints",
    {
      schema: {
        summary: "Lists the signed checkpoints and the retention anchor",
        response: withErrors({
          200: {
            type: "object",
            required: ["checkpoints", "anchor"],
            properties: {
              checkpoints: {
                type: "array",
                items: {
                  type: "object",
                  required: ["treeSize", "prevTreeSize", "rootHash", "at", "signed"],
                  properties: {
                    treeSize: { type: "integer" },
                    prevTreeSize: { type: "integer" },
                    rootHash: { type: "string" },
                    at: { type: "integer" },
                    signed: { type: "string" },
                  },
                },
              },
              anchor: {
                type: ["object", "null"],
                properties: {
                  prunedThrough: { type: "integer" },
                  lastHash: { type: "string" },
                  frontier: { type: "string" },
                  at: { type: "integer" },
                },
              },
            },
          },
        }),
      },
      config: { action: "audit.read", resource: "audit_log", auditEvent: null },
    },
    async () => ({ checkpoints: await log.store.checkpoints(), anchor: await log.store.anchor() }),
  );

  app.post(
    "/v1/audit/checkpoints",
    {
      schema: {
        summary: "Signs a checkpoint over every record now, unless one already covers them",
        body: emptyBodySchema,
        response: withErrors({
          200: {
            type: "object",
            required: ["signed", "treeSize"],
            properties: { signed: { type: "boolean" }, treeSize: { type: ["integer", "null"] } },
          },
        }),
      },
      config: { action: "audit.checkpoint", resource: "audit_log", auditEvent: "audit.checkpoint" },
    },
    async (request) => {
      const signed = await log.checkpointer.checkpoint();
      const latest = await log.store.latestCheckpoint();
      // A signed checkpoint's own record names this request and is the route's event. With
      // nothing new, the event records the request without a tree size, so it announces nothing.
      await audit.success(request, { details: { signed: signed !== null } });
      return { signed: signed !== null, treeSize: latest?.treeSize ?? null };
    },
  );

  app.get(
    "/v1/audit/public-key",
    {
      schema: {
        summary: "The Ed25519 public key that verifies checkpoints, as a JWK",
        response: withErrors({
          200: {
            type: "object",
            required: ["kty", "crv", "x"],
            properties: { kty: { type: "string" }, crv: { type: "string" }, x: { type: "string" } },
          },
        }),
      },
      config: { action: "audit.read", resource: "audit_log", auditEvent: null },
    },
    async () => {
      const jwk = await deps.root.checkpointPublicKey();
      return { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
    },
  );

  app.get<{ Params: { id: string } }>(
    "/v1/audit/trace/:id",
    {
      schema: {
        summary:
          "Traces a credential or key version to the root, with the records that prove each step",
        params: subjectParams,
        response: withErrors({ 200: traceSchema }),
      },
      config: { action: "audit.read", resource: "audit_log", auditEvent: null },
    },
    async (request) => traceSubject(log.store, request.params.id),
  );

  app.get<{ Params: { id: string } }>(
    "/v1/audit/proofs/:id",
    {
      schema: {
        summary: "A proof file for a trace: its records, inclusion proofs and a signed checkpoint",
        params: subjectParams,
        response: withErrors({ 200: proofSchema }),
      },
      config: { action: "audit.read", resource: "audit_log", auditEvent: null },
    },
    async (request) => {
      const trace = await traceSubject(log.store, request.params.id);
      return buildProof(log.store, trace);
    },
  );

  app.get(
    "/v1/audit/completeness",
    {
      schema: {
        summary: "Counts issuances against their audit records",
        response: withErrors({ 200: completenessSchema }),
      },
      config: { action: "audit.read", resource: "audit_log", auditEvent: null },
    },
    async () => log.completeness(),
  );

  app.post<{ Body: { through: number } }>(
    "/v1/audit/prune",
    {
      schema: {
        summary: "Prunes records up to a checkpoint; the anchor keeps the rest verifiable",
        body: {
          type: "object",
          required: ["through"],
          additionalProperties: false,
          properties: { through: { type: "integer", minimum: 1 } },
        },
        response: withErrors({
          200: {
            type: "object",
            required: ["prunedThrough", "removed", "rootHash"],
            properties: {
              prunedThrough: { type: "integer" },
              removed: { type: "integer" },
              rootHash: { type: "string" },
            },
          },
        }),
      },
      config: { action: "audit.prune", resource: "audit_log", auditEvent: "audit.pruned" },
    },
    async (request) => {
      const result = await log.prune(request.body.through);
      if (result === null) {
        throw new ArborError(
          "INVALID_ARGUMENT",
          `invalid through ${request.body.through}: records can be pruned only up to the tree size of a signed checkpoint`,
          { parameter: "through", value: String(request.body.through) },
        );
      }
      // Pruning writes its record in its own transaction; pruning nothing new writes none, and
      // then this writes the request's event.
      await audit.success(request, {
        details: { prunedThrough: result.prunedThrough, removed: result.removed },
      });
      return result;
    },
  );
}
