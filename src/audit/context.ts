import { AsyncLocalStorage } from "node:async_hooks";

import type { AuditEvent, AuditEventType, AuditPrincipal } from "./types.ts";

/**
 * Who is acting, for events written deep inside a component (a key change inside the key tree's
 * transaction) where the request itself is out of reach. The HTTP app opens one per request;
 * background work (scheduled promotion, retirement) runs without one and is attributed to the
 * `system` principal.
 */
export interface AuditActor {
  principal(): AuditPrincipal;
  sourceAddress(): string | null;
  requestId(): string | null;
  /** Event types already written in a state change's own transaction for this request. */
  readonly writtenInTransaction: Set<AuditEventType>;
}

const actors = new AsyncLocalStorage<AuditActor>();

/** Runs `work` with `actor` as the acting party of every event written inside it. */
export function runAsActor<T>(actor: AuditActor, work: () => T): T {
  return actors.run(actor, work);
}

/**
 * Runs `work` with no acting party, so its events name the system principal. Background work
 * started from inside a request (a checkpoint that a request's commit triggered) uses it, or the
 * request would be named as its actor.
 */
export function runWithoutActor<T>(work: () => T): T {
  return actors.exit(work);
}

export function currentActor(): AuditActor | undefined {
  return actors.getStore();
}

export const SYSTEM_PRINCIPAL: AuditPrincipal = Object.freeze({ type: "system", id: "arbor" });

/** Returns the fields naming who acted: the current actor, or the system principal. */
export function actorFields(): Pick<AuditEvent, "principal" | "sourceAddress" | "requestId"> {
  const actor = currentActor();
  if (actor === undefined) {
    return { principal: { ...SYSTEM_PRINCIPAL }, sourceAddress: null, requestId: null };
  }
  const principal = actor.principal();
  return {
    principal: { type: principal.type, id: principal.id },
    sourceAddress: actor.sourceAddress(),
    requestId: actor.requestId(),
  };
}
