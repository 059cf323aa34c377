import type { AuditEvent } from "../../src/audit/types.ts";

/** Builds a successful `crypto.encrypt` event by an operator, with `overrides` applied. */
export function event(overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    type: "crypto.encrypt",
    outcome: "success",
    at: Date.UTC(2026, 0, 1),
    principal: { type: "operator", id: "opt_test" },
    sourceAddress: "127.0.0.1",
    requestId: "req-1",
    keyId: null,
    keyVersion: null,
    chain: [],
    credentialId: null,
    errorCode: null,
    details: {},
    ...overrides,
  };
}
