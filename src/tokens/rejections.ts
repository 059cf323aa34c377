import type { AuditEvent, AuditPrincipal, AuditWriter } from "../audit/types.ts";
import type { Clock } from "../clock.ts";
import { ArborError } from "../errors/index.ts";
import { parseKid } from "./jws.ts";
import type { TokenRejection } from "./types.ts";

/** Facts about the request that carried a rejected token. */
export interface RejectionContext {
  principal: AuditPrincipal;
  sourceAddress: string | null;
  requestId: string | null;
  /** The route's action, such as `token.introspect`. */
  action: string | null;
}

/** The counters a rejection moves; prom-client counters fit. */
export interface RejectionMetrics {
  tokenValidationFailures: { inc(labels: { reason: string }): void };
  auditEvents: { inc(labels: { type: string; outcome: string }): void };
}

export interface RejectionRecorderDeps {
  audit: AuditWriter;
  clock: Clock;
  metrics: RejectionMetrics;
}

/**
 * Records a rejected access token: `arbor_token_validation_failures_total{reason}` and a durable
 * `token.rejected` event with the reason and, when readable, the `kid` and `jti`. Nothing else
 * from the token is recorded. Throws AUDIT_UNAVAILABLE when the event cannot be written, so the
 * caller responds with 503 instead of an unrecorded rejection.
 */
export function createRejectionRecorder(deps: RejectionRecorderDeps) {
  return async function recordRejection(
    context: RejectionContext,
    rejection: TokenRejection,
  ): Promise<void> {
    deps.metrics.tokenValidationFailures.inc({ reason: rejection.reason });

    const kid = rejection.kid === null ? null : parseKid(rejection.kid);
    const event: AuditEvent = {
      type: "token.rejected",
      outcome: "failure",
      at: deps.clock.now(),
      principal: context.principal,
      sourceAddress: context.sourceAddress,
      requestId: context.requestId,
      keyId: kid?.keyId ?? null,
      keyVersion: kid?.version ?? null,
      chain: [],
      credentialId: rejection.jti,
      errorCode: "UNAUTHENTICATED",
      details: { action: context.action, reason: rejection.reason, kid: rejection.kid },
    };
    try {
      await deps.audit.write(event);
    } catch (error) {
      throw new ArborError(
        "AUDIT_UNAVAILABLE",
        "the audit log cannot record this token check, so no answer was sent; retry when the audit store is available",
        {},
        { cause: error },
      );
    }
    deps.metrics.auditEvents.inc({ type: event.type, outcome: event.outcome });
  };
}

export type RejectionRecorder = ReturnType<typeof createRejectionRecorder>;
