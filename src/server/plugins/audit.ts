import type { FastifyRequest } from "fastify";

import type { AuditEvent, AuditEventType, AuditOutcome } from "../../audit/types.ts";
import { ArborError } from "../../errors/index.ts";
import { ANONYMOUS, type ServerDeps } from "../deps.ts";
import { routeMeta } from "../route-config.ts";

type DetailValue = string | number | boolean | null;

/** Facts a handler learned about the request, which its audit event carries. */
export interface AuditFields {
  keyId?: string | null;
  keyVersion?: number | null;
  chain?: string[];
  credentialId?: string | null;
  details?: Record<string, DetailValue>;
}

/** Per-request audit bookkeeping, created by the first hook of every request. */
export interface AuditState {
  /**
   * True once the request's event was attempted: the route's event, or `auth.failed` or
   * `authz.denied`. The error handler writes a failure event only while this is false, so a
   * request never produces two events for the same outcome.
   */
  settled: boolean;
  fields: AuditFields;
  /**
   * Event types a component already wrote in the transaction of its state change (a key change
   * in the key tree). The route's success event of the same type is then not written again.
   */
  writtenInTransaction: Set<AuditEventType>;
}

export function newAuditState(): AuditState {
  return { settled: false, fields: {}, writtenInTransaction: new Set() };
}

export type AuditRecorder = ReturnType<typeof createAuditRecorder>;

/**
 * Writes audit events for requests. Every write is awaited before the response is sent (durable
 * first). A write that fails becomes AUDIT_UNAVAILABLE (503), and the caller lets it propagate so
 * that no credential or response leaves.
 */
export function createAuditRecorder(
  deps: Pick<ServerDeps, "audit" | "clock" | "metrics" | "auditKey">,
) {
  async function write(
    request: FastifyRequest,
    type: AuditEventType,
    outcome: AuditOutcome,
    errorCode: string | null,
    fields: AuditFields,
  ): Promise<void> {
    const principal = request.principal ?? ANONYMOUS;
    const event: AuditEvent = {
      type,
      outcome,
      at: deps.clock.now(),
      principal: { type: principal.type, id: principal.id },
      sourceAddress: request.ip ?? null,
      requestId: request.id,
      keyId: fields.keyId ?? null,
      keyVersion: fields.keyVersion ?? null,
      chain: fields.chain ?? [],
      credentialId: fields.credentialId ?? null,
      errorCode,
      details: {
        action: routeMeta(request.routeOptions.config)?.action ?? null,
        ...fields.details,
      },
    };

    try {
      await deps.audit.write(event);
    } catch (error) {
      request.log.error({ err: error, auditEvent: type }, "audit write failed");
      throw new ArborError(
        "AUDIT_UNAVAILABLE",
        "the audit log cannot record this request, so no response or credential was sent; retry when the audit store is available",
      );
    }
    deps.metrics.auditEvents.inc({ type, outcome });
  }

  function routeEvent(request: FastifyRequest): AuditEventType | null {
    return routeMeta(request.routeOptions.config)?.auditEvent ?? null;
  }

  /** Remembers fields (such as the resolved key) for the event written later, even on failure. */
  function note(request: FastifyRequest, fields: AuditFields): void {
    const current = request.auditState.fields;
    request.auditState.fields = {
      ...current,
      ...fields,
      details: { ...current.details, ...fields.details },
    };
  }

  /** Writes the route's success event; call it before sending the response. */
  async function success(request: FastifyRequest, fields: AuditFields = {}): Promise<void> {
    const type = routeEvent(request);
    if (type === null) throw new Error(`route ${request.routeOptions.url} declares no audit event`);

    note(request, fields);
    request.auditState.settled = true;
    if (request.auditState.writtenInTransaction.has(type)) return;
    await write(request, type, "success", null, request.auditState.fields);
  }

  /** Writes an event besides the route's own, such as `sys.unsealed` after the last share. */
  async function extra(
    request: FastifyRequest,
    type: AuditEventType,
    fields: AuditFields = {},
  ): Promise<void> {
    await write(request, type, "success", null, fields);
  }

  /**
   * Writes `auth.failed` or `authz.denied`; the request gets no other event. A `presented`
   * credential is never written: the event carries its HMAC under the audit key
   * (`credentialHmac`), so repeated use of the same wrong or stolen secret can be correlated.
   */
  async function rejection(
    request: FastifyRequest,
    type: "auth.failed" | "authz.denied",
    errorCode: string,
    details: Record<string, DetailValue> = {},
    presented?: { kind: string; value: string },
  ): Promise<void> {
    request.auditState.settled = true;
    const outcome = type === "auth.failed" ? "failure" : "denied";
    const credentialHmac =
      presented === undefined || deps.auditKey === undefined
        ? undefined
        : await deps.auditKey.fingerprint(presented.kind, presented.value);
    const all = credentialHmac === undefined ? details : { ...details, credentialHmac };
    await write(request, type, outcome, errorCode, { details: all });
  }

  /**
   * Writes the route's failure event with the error code, unless the route writes no events
   * or the request already has its event. Called by the error handler.
   */
  async function failure(request: FastifyRequest, errorCode: string): Promise<void> {
    const type = routeEvent(request);
    if (type === null || request.auditState === null || request.auditState.settled) return;

    request.auditState.settled = true;
    await write(request, type, "failure", errorCode, request.auditState.fields);
  }

  return { note, success, extra, rejection, failure };
}
